"""``inbound sync`` against the emulator through the real SDK: messages written in
Stream while webhooks were lost become inbox rows, each once however often it runs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select
from stream_chat import StreamChat

from stream_outbox.app_hooks.outbox import inbox
from stream_outbox.emulator import Emulator
from stream_outbox.worker.errors import AdminError
from stream_outbox.worker.inbound.catch_up import default_since, sync, sync_from_stream
from stream_outbox.worker.settings import Settings
from stream_outbox.worker.stream.gateway import StreamGateway
from tests.support.settings import API_KEY, API_SECRET


@pytest.fixture()
def client(emu: Emulator) -> StreamChat:
    client = StreamChat(API_KEY, API_SECRET, base_url=emu.base_url)
    client.upsert_users([{"id": "ann"}, {"id": "bob"}])
    return client


@pytest.fixture()
def gateway(emu: Emulator) -> StreamGateway:
    return StreamGateway(API_KEY, API_SECRET, base_url=emu.base_url, timeout=5.0)


def channel_with(client: StreamChat, channel_id: str, *texts: str) -> list[str]:
    """A channel of ann and bob with ann's messages; their ids."""
    channel = client.channel("messaging", channel_id, {"members": ["ann", "bob"]})
    channel.create("ann")
    return [channel.send_message({"text": t}, "ann")["message"]["id"] for t in texts]


def rows(engine: Engine) -> list[tuple[str, str, str]]:
    query = select(inbox.c.event_type, inbox.c.cid, inbox.c.message_id).order_by(inbox.c.id)
    with engine.connect() as conn:
        return [(r.event_type, r.cid, r.message_id) for r in conn.execute(query)]


def test_sync_stores_what_stream_holds_since_a_time_once(
    clean_db: Engine, client: StreamChat, gateway: StreamGateway
) -> None:
    # Given a channel whose messages are all older than the outage
    channel_with(client, "before", "old news")
    since = datetime.now(UTC)
    # and, during it, messages written in Stream: one edited, one deleted
    first, edited = channel_with(client, "busy", "one", "two")
    [deleted] = channel_with(client, "quiet", "oops")
    client.update_message_partial(edited, {"set": {"text": "two, edited"}}, "ann")
    client.delete_message(deleted)
    # When inbound sync runs from the outage's start
    found = sync(clean_db, gateway, since)
    # Then both channels' messages are inbox rows, as webhooks would have been
    assert (found.channels, found.messages, found.stored) == (2, 3, 4)
    assert sorted(rows(clean_db)) == sorted(
        [
            ("message.new", "messaging:busy", first),
            ("message.new", "messaging:busy", edited),
            ("message.updated", "messaging:busy", edited),
            ("message.deleted", "messaging:quiet", deleted),
        ]
    )
    with clean_db.connect() as conn:
        payload = conn.scalar(
            select(inbox.c.payload).where(inbox.c.event_type == "message.updated")
        )
    assert payload["message"]["text"] == "two, edited" and payload["sync"] is True
    assert payload["channel_type"] == "messaging" and payload["user"]["id"] == "ann"
    # When it runs again, nothing new is stored
    again = sync(clean_db, gateway, since)
    assert (again.messages, again.stored) == (3, 0)
    assert len(rows(clean_db)) == 4


def test_sync_pages_through_more_channels_than_one_query_returns(
    clean_db: Engine, client: StreamChat, gateway: StreamGateway
) -> None:
    since = datetime.now(UTC)
    for n in range(32):
        channel_with(client, f"c{n}", f"hello {n}")
    found = sync(clean_db, gateway, since)
    assert (found.channels, found.stored) == (32, 32)


def test_the_default_since_is_the_previous_sync_start_less_a_minute(
    clean_db: Engine, client: StreamChat, settings: Settings
) -> None:
    # Given no sync yet and an empty inbox: the operator must say from when
    with pytest.raises(AdminError, match="give --since"):
        default_since(clean_db)
    # When a sync runs (through the operators' gateway, recorded in the audit)
    started = datetime.now(UTC)
    channel_with(client, "later", "hi")
    sync_from_stream(settings, clean_db, started)
    # Then the next one starts a minute before it did
    assert started.timestamp() - 61 < default_since(clean_db).timestamp() < started.timestamp()
