"""Stream's events read as values, and the decisions on them that need no database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from stream_outbox.worker.inbound.events import (
    BadEvent,
    edit_applies,
    own_echo,
    parse_event,
)
from stream_outbox.worker.store.message_map import MapEntry, app_born_id, stream_id_of
from tests.support.stream_events import at, channel_event, message_event, read_event

CID = "messaging:general"
EARLY, LATE = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)


def entry(
    born_in: str = "stream", updated: datetime | None = None, deleted: bool = False
) -> MapEntry:
    return MapEntry("7", "c-7", born_in, updated, LATE if deleted else None)


def test_an_event_is_read_as_stream_sends_it() -> None:
    event = parse_event(message_event("message.updated", CID, "c-1", "42", "yo", updated=3))
    assert (event.type, event.cid, event.user_id, event.from_client) == (
        "message.updated",
        CID,
        "42",
        True,
    )
    assert event.message is not None
    assert (event.message.id, event.message.text, event.message.user_id) == ("c-1", "yo", "42")
    assert event.message.updated_at == datetime.fromisoformat(at(3))
    member = parse_event(channel_event("member.added", CID, "1", member_id="2", client=None))
    assert (member.member_id, member.from_client) == ("2", None)
    # the channel from cid alone
    assert parse_event({"type": "message.read", "cid": "team:x"}).cid == "team:x"


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ({}, "event without a type"),
        ({"type": "message.new"}, "message.new without a message id"),
        ({"type": "message.read", "created_at": "noon"}, "created_at is not a time: 'noon'"),
    ],
)
def test_an_event_that_cannot_apply_is_refused_in_one_line(
    event: dict[str, Any], error: str
) -> None:
    with pytest.raises(BadEvent) as refused:
        parse_event(event)
    assert str(refused.value) == error


def test_the_ids_the_mirror_gives_are_told_from_streams() -> None:
    assert app_born_id("msg-123") == "123" and app_born_id("msg3-a-b") == "a-b"
    assert app_born_id("msg0-1") is None and app_born_id("c-msg-1") is None
    assert stream_id_of("5", 0, {}) == "msg-5" and stream_id_of("5", 2, {}) == "msg2-5"
    assert stream_id_of("5", 2, {"5": "c-5"}) == "c-5"


def test_own_echoes_are_the_mirrors_calls_never_a_clients() -> None:
    def echo(raw: dict[str, Any], mapped: MapEntry | None = None) -> bool:
        return own_echo(parse_event(raw), mapped)

    # Stream says who called
    assert echo(read_event(CID, "1", 5, client=False))
    assert not echo(read_event(CID, "1", 5, client=True))
    assert not echo(message_event("message.updated", CID, "msg-1", "1", client=True))
    # where it does not: the mirror's ids, the system user, the map's word
    assert echo(message_event("message.new", CID, "msg-1", "1", client=None))
    assert echo(message_event("message.new", CID, "x", "stream-outbox-system", client=None))
    assert echo(message_event("message.new", CID, "c-7", "1", client=None), entry("app"))
    assert not echo(message_event("message.new", CID, "c-7", "1", client=None), entry())
    assert not echo(read_event(CID, "1", 5, client=None))
    # found in Stream's state by inbound sync: a message of the app's is no echo (the
    # level checks decide), the system user's still is
    found = message_event("message.updated", CID, "msg-1", "1", client=None) | {"sync": True}
    assert not echo(found)
    assert not echo(found, entry("app"))
    system = message_event("message.new", CID, "x", "stream-outbox-system", client=None)
    assert echo(system | {"sync": True})


def test_the_later_edit_wins_and_a_deletion_wins_over_any_edit() -> None:
    assert edit_applies(None, EARLY)
    assert edit_applies(entry(updated=EARLY), LATE)
    assert not edit_applies(entry(updated=LATE), EARLY)
    assert not edit_applies(entry(updated=LATE), LATE)
    assert not edit_applies(entry(deleted=True), LATE)
    assert edit_applies(entry(updated=None), EARLY)
