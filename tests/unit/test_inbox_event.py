"""What an event Stream sends says, read once (pure): its columns, Stream's times, and the
webhook-shaped events inbound sync makes of a message and of a channel's read state."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stream_outbox.worker.inbound.catch_up import read_events, sync_events
from stream_outbox.worker.inbound.inbox_event import event_from
from stream_outbox.worker.stream.times import parse_time, stream_time


def test_a_message_event_gives_its_columns() -> None:
    payload = {
        "type": "message.new",
        "cid": "messaging:c1",
        "message": {"id": "m1", "user": {"id": "ann"}},
        "created_at": "2026-12-06T17:00:00.123456789Z",
    }
    event = event_from(payload, "w-1")
    assert (event.webhook_id, event.event_type, event.cid) == ("w-1", "message.new", "messaging:c1")
    assert (event.message_id, event.user_id) == ("m1", "ann")
    assert event.event_at == datetime(2026, 12, 6, 17, 0, 0, 123456, tzinfo=UTC)
    assert event.known and event.payload is payload


def test_the_channel_comes_from_type_and_id_or_the_channel_object() -> None:
    by_parts = event_from({"type": "member.added", "channel_type": "team", "channel_id": "x"})
    by_object = event_from({"type": "channel.updated", "channel": {"cid": "team:y"}})
    assert (by_parts.cid, by_object.cid) == ("team:x", "team:y")
    assert event_from({"type": "user.updated", "user": {"id": "u"}}).cid is None


def test_an_unknown_type_is_not_known() -> None:
    assert not event_from({"type": "reaction.new"}).known


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1], "the body is not a JSON object"),
        ({"no": "type"}, "the event has no type"),
        ({"type": ""}, "the event has no type"),
    ],
)
def test_what_is_not_an_event_is_refused_in_one_line(payload: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        event_from(payload)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-06T17:00:00Z", datetime(2026, 12, 6, 17, tzinfo=UTC)),
        ("2026-12-06T17:00:00.5+00:00", datetime(2026, 12, 6, 17, 0, 0, 500000, tzinfo=UTC)),
        ("2026-12-06T17:00:00", None),  # no zone: not Stream's
        ("yesterday", None),
        (None, None),
    ],
)
def test_stream_times(text: object, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_stream_time_round_trips() -> None:
    moment = datetime(2026, 12, 6, 17, 0, 0, 1, tzinfo=UTC)
    assert stream_time(moment) == "2026-12-06T17:00:00.000001Z"
    assert parse_time(stream_time(moment)) == moment


def message(**fields: object) -> dict[str, object]:
    base = {"id": "m1", "user": {"id": "ann"}, "created_at": "2026-12-06T17:00:00Z"}
    return {**base, "updated_at": base["created_at"], **fields}


def test_sync_events_of_a_new_an_edited_and_a_deleted_message() -> None:
    new = sync_events("messaging:c", message())
    assert [(e.event_type, e.webhook_id) for e in new] == [
        ("message.new", "sync:m1:2026-12-06T17:00:00Z")
    ]
    assert new[0].payload["channel_type"] == "messaging" and new[0].user_id == "ann"
    edited = sync_events("messaging:c", message(updated_at="2026-12-06T17:05:00Z"))
    assert [(e.event_type, e.webhook_id) for e in edited] == [
        ("message.new", "sync:m1:2026-12-06T17:00:00Z"),
        ("message.updated", "sync:m1:2026-12-06T17:05:00Z"),
    ]
    deleted = sync_events("messaging:c", message(deleted_at="2026-12-06T17:09:00Z"))
    assert [(e.event_type, e.event_at) for e in deleted] == [
        ("message.deleted", datetime(2026, 12, 6, 17, 9, tzinfo=UTC))
    ]


def test_sync_events_are_marked_found_in_streams_state() -> None:
    assert all(e.payload["sync"] is True for e in sync_events("messaging:c", message()))


def test_read_events_of_a_channels_read_state() -> None:
    reads = [
        {"user": {"id": "ann"}, "last_read": "2026-12-06T17:01:00Z", "last_read_message_id": "m1"},
        # a member's joining: a read state with no message read stands for no read
        {"user": {"id": "bob"}, "last_read": "2026-12-06T17:00:00Z", "unread_messages": 0},
        {"user": {}, "last_read": "2026-12-06T17:00:00Z", "last_read_message_id": "m1"},
    ]
    [read] = read_events("messaging:c", reads)
    assert (read.event_type, read.cid, read.user_id, read.webhook_id) == (
        "message.read",
        "messaging:c",
        "ann",
        "sync:read:messaging:c:ann:2026-12-06T17:01:00Z",
    )
    assert read.event_at == datetime(2026, 12, 6, 17, 1, tzinfo=UTC)
    assert read.payload["last_read_message_id"] == "m1" and read.payload["sync"] is True
