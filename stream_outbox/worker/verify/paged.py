"""``admin verify`` at any size: both sides read and compared a page at a time.

Users go in pages of the app's ids (Stream's QueryUsers, 100 a call); live
conversations in pages whose channels Stream answers for 30 a QueryChannels call,
members included; the channels of conversations gone from the app in pages of the
channel map. With the history, each channel's messages are walked on both sides newest
first, a page at a time (:func:`~stream_outbox.worker.verify.history.walk_history`):
the database's in keyset pages, Stream's from the channel's answer on. Memory holds a
page, and the differences found; no query binds more than a page of ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Engine, select

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.outbox import channel_map
from stream_outbox.worker.store import message_map
from stream_outbox.worker.store.channel_map import ChannelMap, ChannelRef
from stream_outbox.worker.store.cutover import Cutover, read_cutover
from stream_outbox.worker.stream.protocol import RemoteChannel, StreamReader
from stream_outbox.worker.verify.compare import ChannelView, Difference, State, UserView, compare
from stream_outbox.worker.verify.history import (
    Wanted,
    compare_reads,
    held_read,
    instant,
    walk_history,
)
from stream_outbox.worker.verify.readers import (
    askable,
    channel_key,
    held_channels,
    held_users,
    held_view,
)

__all__ = ["PAGE", "Verification", "verify"]

PAGE = 900  # users, conversations or messages read at once (30 QueryChannels calls' worth)


@dataclass
class Verification:
    """What ``admin verify`` found: the differences (users first, then channels, each by
    id) and how much it compared."""

    differences: list[Difference] = field(default_factory=list)
    users: int = 0
    channels: int = 0
    messages: int = 0
    dated: int = 0  # messages whose original created_at was compared

    def add(self, found: list[Difference]) -> None:
        """Keep the differences of a page."""
        self.differences += found

    def merge(self, other: Verification) -> None:
        """Add what another part of the run found."""
        self.differences += other.differences
        self.users += other.users
        self.channels += other.channels
        self.messages += other.messages
        self.dated += other.dated


@dataclass(frozen=True)
class _Asked:
    """How a run reads: the engine and binding, Stream, the page size, the history."""

    engine: Engine
    binding: Binding
    stream: StreamReader
    page: int
    history: bool
    cutover: Cutover | None


def verify(
    engine: Engine,
    binding: Binding,
    stream: StreamReader,
    *,
    history: bool = False,
    page: int = PAGE,
) -> Verification:
    """Compare what the database wants with what Stream holds, a page at a time: every
    live user and conversation, and the channels of conversations gone; with ``history``,
    each channel's messages (once, at the time the cut-over's import carried, in order)
    and members' ``last_read``."""
    with engine.connect() as conn:
        cutover = read_cutover(conn) if history else None
    asked = _Asked(engine, binding, stream, page, history, cutover)
    found = Verification()
    # Users beside channels: each endpoint has a budget of its own (QueryUsers' is the
    # tighter), so the two walks wait for Stream at once rather than one after the other
    with ThreadPoolExecutor(1, thread_name_prefix="verify-users") as beside:
        users = beside.submit(_users, asked, Verification())
        _live_channels(asked, found)
        _gone_channels(asked, found)
        found.merge(users.result())
    found.differences.sort(key=lambda d: (d.kind != "user", d.id))  # stable: checks' order
    return found


def _users(asked: _Asked, found: Verification) -> Verification:
    after: str | None = None
    while True:
        with asked.engine.connect() as conn:
            ids = reads.ids_after(asked.binding, conn, "user", after, asked.page)
            wanted = {
                uid: UserView(name=user.name, image=user.image)
                for uid, user in reads.desired_users(asked.binding, conn, ids).items()
            }
        held = held_users(asked.stream, ids)
        found.add(compare(desired=State(users=wanted), held=State(users=held)))
        found.users += len(wanted)
        if len(ids) < asked.page:
            return found
        after = ids[-1]


@dataclass(frozen=True)
class _Channel:
    """A live conversation's channel as the database wants it."""

    conversation_id: str
    generation: int
    view: ChannelView
    reads: Mapping[str, datetime]
    undated: bool  # some of its messages have no created_at
    imported: bool  # the cut-over's import carried its messages (at their own times)


def _live_channels(asked: _Asked, found: Verification) -> None:
    after: str | None = None
    while True:
        with asked.engine.connect() as conn:
            ids = reads.ids_after(asked.binding, conn, "conversation", after, asked.page)
            wanted = _wanted_channels(asked, conn, ids)
        found.channels += len(wanted)
        held = asked.stream.channel_states(askable(sorted(wanted)), history=asked.history)
        views = {cid: held_view(remote) for cid, remote in held.items()}
        desired = State(channels={cid: channel.view for cid, channel in wanted.items()})
        found.add(compare(desired=desired, held=State(channels=views)))
        if asked.history:
            for cid in sorted(set(wanted) & set(held)):
                found.add(_history(asked, found, cid, wanted[cid], held[cid]))
        if len(ids) < asked.page:
            return
        after = ids[-1]


def _wanted_channels(asked: _Asked, conn: Connection, ids: list[str]) -> dict[str, _Channel]:
    """The channels of a page of live conversations, by cid."""
    desired = reads.desired_channels(asked.binding, conn, ids)
    refs = ChannelMap(asked.engine).channels_for(ids, conn)
    last_reads = (
        reads.read_states(asked.binding, conn, ids)
        if asked.history and asked.cutover is not None
        else {}
    )
    undated = reads.undated_conversations(asked.binding, conn, ids) if asked.history else set()
    wanted: dict[str, _Channel] = {}
    for conversation_id, channel in desired.items():
        ref = refs.get(conversation_id)
        cid, generation = channel_key(channel, ref)
        if cid is not None:
            view = ChannelView(members=channel.members, data=dict(channel.data))
            imported = _imported(asked.cutover, generation, ref)
            kept = last_reads.get(conversation_id, {}) if imported else {}  # a copy sets none
            undated_ones = conversation_id in undated
            wanted[cid] = _Channel(conversation_id, generation, view, kept, undated_ones, imported)
    return wanted


def _imported(cutover: Cutover | None, generation: int, ref: ChannelRef | None) -> bool:
    """Whether the cut-over's import carried the channel's messages: not one created again
    (its messages sent again), nor one the export skipped (copied by SendMessage); an
    export recorded by an older release marked none, and carried them all."""
    return cutover is not None and not generation and cutover.imports_messages_of(ref)


def _history(
    asked: _Asked, found: Verification, cid: str, channel: _Channel, held: RemoteChannel
) -> list[Difference]:
    """A channel's messages and members' reads, both sides walked a page at a time."""
    cutover = asked.cutover
    watermark = cutover.watermark if cutover is not None else None
    want_reads = {
        uid: (instant(moment) if cutover is not None and cutover.covers(moment) else None)
        for uid, moment in channel.reads.items()
    }
    have_reads = {uid: held_read(last, watermark) for uid, last in held.reads.items() if last}
    walked = walk_history(_database_side(asked, found, channel), _stream_side(asked, held))
    return [
        Difference("channel", cid, *difference)
        for difference in [*walked, *compare_reads(want=want_reads, have=have_reads)]
    ]


def _database_side(asked: _Asked, found: Verification, channel: _Channel) -> Iterator[Wanted]:
    """A conversation's live messages, undated ones first, then newest first, in keyset
    pages; each with the time Stream must hold where the cut-over's import carried it
    (none in a channel created again: its messages were sent again, at Stream's time)."""
    with asked.engine.connect() as conn:  # one connection for the channel's walk
        if channel.undated:
            yield from _undated(asked, conn, found, channel)
        yield from _dated(asked, conn, found, channel)


def _undated(
    asked: _Asked, conn: Connection, found: Verification, channel: _Channel
) -> Iterator[Wanted]:
    after: str | None = None
    while True:
        page = reads.undated_messages(
            asked.binding, conn, channel.conversation_id, after, asked.page
        )
        found.messages += len(page)
        mapped = message_map.stream_ids(conn, [m.id for m in page])
        ids = (message_map.stream_id_of(m.id, channel.generation, mapped) for m in page)
        yield from (Wanted(stream_id, None) for stream_id in ids)
        if len(page) < asked.page:
            return
        after = page[-1].id


def _dated(
    asked: _Asked, conn: Connection, found: Verification, channel: _Channel
) -> Iterator[Wanted]:
    cutover = asked.cutover if channel.imported else None
    before: tuple[datetime, str] | None = None
    while True:
        page = reads.messages_before(
            asked.binding, conn, channel.conversation_id, before, asked.page
        )
        mapped = message_map.stream_ids(conn, [m.id for m in page])  # born in Stream
        for message in page:
            created = message.created_at
            assert created is not None  # dated ones only
            kept = instant(created) if cutover is not None and cutover.covers(created) else None
            found.messages += 1
            found.dated += kept is not None
            stream_id = message_map.stream_id_of(message.id, channel.generation, mapped)
            yield Wanted(stream_id, instant(created), kept)
            before = (created, message.id)
        if len(page) < asked.page:
            return


def _stream_side(asked: _Asked, held: RemoteChannel) -> Iterator[tuple[str, str]]:
    """A channel's messages as Stream holds them, newest first: the page its answer
    carried, then a channel query a page."""
    page = held.latest
    while page is not None:
        yield from reversed(page.messages)
        if page.before is None:
            return
        page = asked.stream.history_page(held.channel_type, held.channel_id, page.before)


def _gone_channels(asked: _Asked, found: Verification) -> None:
    """The channels of conversations the map holds and the app no longer has: wanted
    deleted (or absent) in Stream."""
    after = ""
    conversation = channel_map.c.conversation_id
    while True:
        query = (
            select(conversation, channel_map.c.channel_type, channel_map.c.channel_id)
            .where(conversation > after)
            .order_by(conversation)
            .limit(asked.page)
        )
        with asked.engine.connect() as conn:
            rows = conn.execute(query).all()
            live = reads.live_among(asked.binding, conn, "conversation", [r[0] for r in rows])
        gone = {f"{t}:{i}": ChannelView(deleted=True) for c, t, i in rows if c not in live}
        held = held_channels(asked.stream, sorted(gone))
        found.add(compare(desired=State(channels=gone), held=State(channels=held)))
        if len(rows) < asked.page:
            return
        after = rows[-1][0]
