"""``inbound sync`` against the emulator through the real SDK: messages written in
Stream while webhooks were lost become inbox rows, each once however often it runs; once
applied, a client's edits, deletions and reads of a conversation used from both sides are
in the app's tables, and the mirror's own sends write nothing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, insert, select, text, update
from stream_chat import StreamChat

from stream_outbox.app_hooks.outbox import inbox
from stream_outbox.app_hooks.reference import (
    REFERENCE_BINDING,
    ConversationParticipant,
    Message,
)
from stream_outbox.emulator import Emulator
from stream_outbox.worker.errors import AdminError
from stream_outbox.worker.inbound.catch_up import default_since, sync, sync_from_stream
from stream_outbox.worker.inbound.runner import Runner
from stream_outbox.worker.settings import Settings
from stream_outbox.worker.stream.gateway import StreamGateway
from stream_outbox.worker.stream.times import parse_time
from tests.support.inbound import two_in_a_conversation
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


# -- lost webhooks of a conversation used from both sides, caught up and applied ----------


@dataclass
class Both:
    """A conversation of ann and bob in the app's tables (the reference app) and its
    channel in Stream, each of its messages in both places (born in the app, sent into
    Stream as the mirror does, ``msg-{id}``)."""

    engine: Engine
    client: StreamChat
    cid: str
    ann: uuid.UUID
    bob: uuid.UUID
    conversation: uuid.UUID

    def app_message(self, content: str) -> uuid.UUID:
        """A message the app wrote, and the mirror sent into Stream."""
        mid = uuid.uuid4()
        with self.engine.begin() as conn:
            conn.execute(
                insert(Message).values(
                    id=mid, conversation_id=self.conversation, sender_id=self.ann, content=content
                )
            )
        kind, _, channel_id = self.cid.partition(":")
        self.client.channel(kind, channel_id).send_message(
            {"id": f"msg-{mid}", "text": content}, str(self.ann)
        )
        return mid

    def texts(self) -> dict[uuid.UUID, str]:
        with self.engine.connect() as conn:
            return {
                row.id: row.content for row in conn.execute(select(Message.id, Message.content))
            }

    def last_read(self, user: uuid.UUID) -> datetime | None:
        query = select(ConversationParticipant.last_read_at).where(
            ConversationParticipant.user_id == user
        )
        with self.engine.connect() as conn:
            found: datetime | None = conn.scalar(query)
        return found

    def app_state(self) -> dict[str, str]:
        """The app's tables, the message map and the outbox, digested: a write shows."""
        digest = "md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), ''))"
        tables = ["users", "conversations", "conversation_participants", "messages"]
        tables += ["stream_outbox_message_map", "stream_outbox"]
        with self.engine.connect() as conn:
            return {name: conn.scalar(text(f"SELECT {digest} FROM {name} t")) for name in tables}

    def catch_up(self, gateway: StreamGateway, since: datetime) -> int:
        """``inbound sync``, then the runner until the inbox has nothing pending; the rows
        stored."""
        found = sync(self.engine, gateway, since)
        applier = Runner(self.engine, REFERENCE_BINDING, min_backoff_ms=1, poll_interval=0.05)
        while applier.run_once():
            pass
        return found.stored


@pytest.fixture()
def both(clean_db: Engine, client: StreamChat) -> Both:
    with clean_db.begin() as conn:
        ann, bob, conversation = two_in_a_conversation(conn, "messaging:both")
    client.upsert_users([{"id": str(ann)}, {"id": str(bob)}])
    channel = client.channel("messaging", "both", {"members": [str(ann), str(bob)]})
    channel.create(str(ann))
    return Both(clean_db, client, "messaging:both", ann, bob, conversation)


def _statuses(engine: Engine) -> list[tuple[str, str]]:
    query = select(inbox.c.event_type, inbox.c.status).order_by(inbox.c.id)
    with engine.connect() as conn:
        return [(r.event_type, r.status) for r in conn.execute(query)]


def test_sync_recovers_lost_client_edits_deletions_and_reads_of_the_apps_messages(
    both: Both, gateway: StreamGateway
) -> None:
    since = datetime.now(UTC)
    edited, deleted, kept = (both.app_message(t) for t in ("to edit", "to delete", "kept"))
    # Given a client's edit and deletion of messages born in the app, and a mark read,
    # whose webhooks were lost
    both.client.update_message_partial(f"msg-{edited}", {"set": {"text": "edited"}}, str(both.ann))
    both.client.delete_message(f"msg-{deleted}")
    both.client.channel("messaging", "both").mark_read(str(both.bob))
    read_in_stream = _member_read(both, str(both.bob))
    # When inbound sync runs and its rows are applied
    assert both.catch_up(gateway, since) > 0
    # Then the app's table has the edit and the deletion, and bob's read
    assert both.texts() == {edited: "edited", kept: "kept"}
    assert both.last_read(both.bob) == read_in_stream
    assert both.last_read(both.ann) is None
    assert ("message.read", "done") in _statuses(both.engine)
    # And running it again stores and changes nothing more
    before = both.app_state()
    assert both.catch_up(gateway, since) == 0
    assert both.app_state() == before


def test_sync_writes_nothing_for_the_mirrors_own_sends_edits_and_reads(
    both: Both, gateway: StreamGateway
) -> None:
    since = datetime.now(UTC)
    sent, edited = both.app_message("sent"), both.app_message("v1")
    # Given the mirror's own edit (the app's text, sent) and read (the app's last_read_at,
    # marked in Stream up to the newest message at or before it)
    with both.engine.begin() as conn:
        conn.execute(update(Message).where(Message.id == edited).values(content="v2"))
        conn.execute(
            update(ConversationParticipant)
            .where(ConversationParticipant.user_id == both.bob)
            .values(last_read_at=datetime.now(UTC))
        )
    both.client.update_message_partial(f"msg-{edited}", {"set": {"text": "v2"}}, str(both.ann))
    both.client.channel("messaging", "both").mark_read(str(both.bob), message_id=f"msg-{sent}")
    before = both.app_state()
    # When inbound sync finds them in Stream's state
    assert both.catch_up(gateway, since) > 0
    # Then nothing of the app's, nor the map or the outbox, was written
    assert both.app_state() == before
    assert both.texts() == {sent: "sent", edited: "v2"}


def _member_read(both: Both, user_id: str) -> datetime:
    state = both.client.query_channels({"cid": both.cid}, member_limit=0, message_limit=0)
    [read] = [r for r in state["channels"][0]["read"] if r["user"]["id"] == user_id]
    found = parse_time(read["last_read"])
    assert found is not None
    return found
