"""A legacy app in bulk, in the database and in the emulator, for ``admin verify`` at scale.

:func:`seed_database` writes users, two-person conversations (one of them ``big``,
with that many members) and the channel map with ``INSERT .. SELECT generate_series``;
:func:`seed_stream` puts what that database wants Stream to hold straight into the
emulator's store (no API call, so no rate limit), read a page at a time through the
binding, as if every reconcile and the history import had run.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, text

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.reference import REFERENCE_BINDING
from stream_outbox.emulator import Emulator
from stream_outbox.emulator.state.store import ChannelRecord, Store, new_member, new_message
from stream_outbox.worker.store.channel_map import ChannelMap
from stream_outbox.worker.sync.bodies import SYSTEM_USER
from stream_outbox.worker.verify.history import instant

__all__ = ["seed_database", "seed_stream"]

_APP = """
CREATE TEMP TABLE u ON COMMIT DROP AS
  SELECT n, gen_random_uuid() AS id FROM generate_series(0, :users - 1) n;
INSERT INTO users (id, email) SELECT id, 'user' || n || '@example.com' FROM u;
INSERT INTO profiles (user_id, full_name) SELECT id, 'User ' || n FROM u;
CREATE TEMP TABLE c ON COMMIT DROP AS
  SELECT n, gen_random_uuid() AS id, n % :users AS a, (n + 1 + n / :users) % :users AS b
  FROM generate_series(0, :conversations - 1) n;
INSERT INTO conversations (id, created_at) SELECT id, '2020-01-01' FROM c;
INSERT INTO conversation_participants (conversation_id, user_id)
  SELECT c.id, u.id FROM c JOIN u ON u.n = c.a
  UNION ALL SELECT c.id, u.id FROM c JOIN u ON u.n = c.b;
INSERT INTO stream_outbox_channel (conversation_id, channel_type, channel_id)
  SELECT id::text, 'messaging', 'legacy_' || id FROM c
"""
_BIG = """
INSERT INTO conversation_participants (conversation_id, user_id)
  SELECT c.id, u.id FROM c JOIN u ON u.n NOT IN (c.a, c.b) WHERE c.n = 0 AND u.n < :big
"""
_MESSAGES = """
INSERT INTO messages (id, conversation_id, sender_id, content, created_at)
SELECT gen_random_uuid(), c.id, u.id, 'Message ' || i,
       timestamptz '2020-01-01' + i * interval '1 second'
FROM generate_series(0, :messages - 1) i JOIN c ON c.n = 0 JOIN u ON u.n = c.a + i % 2
"""


def seed_database(
    engine: Engine, conversations: int, *, big: int = 0, messages: int = 0
) -> dict[str, int]:
    """``conversations`` two-person conversations (the first with ``big`` members in all and
    ``messages`` messages, a second apart from 2020-01-01) of half as many users, each with
    a channel ``messaging:legacy_{id}`` in the map; the counts written."""
    users = max(conversations // 2 + 2, big + 2)
    figures = {"users": users, "conversations": conversations, "messages": messages}
    with engine.begin() as conn:
        for statement in filter(str.strip, _APP.split(";")):
            conn.execute(text(statement), figures)
        if big:
            conn.execute(text(_BIG), {"big": big})
        if messages:
            conn.execute(text(_MESSAGES), {"messages": messages})
        conn.execute(text("ANALYZE"))
    return figures


def seed_stream(
    emu: Emulator,
    engine: Engine,
    binding: Binding = REFERENCE_BINDING,
    *,
    messages: bool = False,
    page: int = 1000,
) -> None:
    """What the database wants Stream to hold, written into the emulator's store: every
    live user, every mapped conversation's channel with its members and data and, with
    ``messages``, its messages at their original ``created_at`` (as the import keeps it)."""
    store = emu.core.store
    for kind, put in (("user", _put_users), ("conversation", _put_channels)):
        after: str | None = None
        while True:
            with engine.connect() as conn:
                ids = reads.ids_after(binding, conn, kind, after, page)
                with emu.core.lock:
                    put(store, conn, binding, ids, messages)
            if len(ids) < page:
                break
            after = ids[-1]


def _put_users(store: Store, conn: Connection, binding: Binding, ids: list[str], _: bool) -> None:
    now = instant("2020-01-01T00:00:00Z")
    store.put_user(dict(SYSTEM_USER), now)
    for user in reads.desired_users(binding, conn, ids).values():
        store.put_user(user.as_stream(), now)


def _put_channels(
    store: Store, conn: Connection, binding: Binding, ids: list[str], messages: bool
) -> None:
    now = instant("2020-01-01T00:00:00Z")
    refs = ChannelMap(conn.engine).channels_for(ids, conn)
    for conversation_id, wanted in reads.desired_channels(binding, conn, ids).items():
        ref = refs.get(conversation_id)
        if ref is None or wanted.created_by is None:
            continue
        channel = ChannelRecord(
            type=ref.channel_type,
            id=ref.channel_id,
            created_by=wanted.created_by,
            created_at=now,
            updated_at=now,
            seq=store.next_seq(),
            data=dict(wanted.data),
            members={uid: new_member(uid, wanted.created_by, now) for uid in wanted.members},
        )
        store.channels[channel.cid] = channel
        if messages:
            _put_messages(store, conn, binding, conversation_id, channel, ref.generation)


def _put_messages(
    store: Store,
    conn: Connection,
    binding: Binding,
    conversation_id: str,
    channel: ChannelRecord,
    generation: int,
) -> None:
    held = store.messages.setdefault(channel.cid, [])
    after: Any = None
    while True:
        page = reads.messages_after(binding, conn, conversation_id, after, 5000)
        for message in page:
            record = new_message(
                id=message.stream_id(generation),
                text=message.text,
                type="regular",
                user_id=message.sender_id or SYSTEM_USER["id"],
                cid=channel.cid,
                created_at=instant(message.created_at or "2020-01-01T00:00:00Z"),
            )
            held.append(record)
            store.message_cids[record["id"]] = channel.cid
        if len(page) < 5000:
            return
        after = (page[-1].created_at, page[-1].id)
