"""The two sides of a comparison, read whole: the database's and Stream's.

:func:`read_desired` reads the database's side (through the binding and the channel
map), :func:`held_from_snapshot` turns the emulator's state document into Stream's
side, :func:`held_from_stream` asks Stream itself through the gateway (:func:`held_users`
and :func:`held_channels` for some of them) and :func:`gather` reads both (the demo).
``admin verify`` reads them a page at a time (:mod:`.paged`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import Binding, DesiredChannel
from stream_outbox.app_hooks.channel_ids import InvalidStreamId, choose_channel_id
from stream_outbox.worker.store import message_map
from stream_outbox.worker.store.channel_map import ChannelRef
from stream_outbox.worker.store.cutover import Cutover
from stream_outbox.worker.store.repository import OutboxRepository
from stream_outbox.worker.stream.protocol import RemoteChannel, StreamReader
from stream_outbox.worker.sync.bodies import SYSTEM_USER
from stream_outbox.worker.verify.compare import ChannelView, State, UserView
from stream_outbox.worker.verify.history import held_read, instant

__all__ = [
    "askable",
    "channel_key",
    "gather",
    "held_channels",
    "held_from_snapshot",
    "held_from_stream",
    "held_users",
    "held_view",
    "read_desired",
]

_V = TypeVar("_V")


def held_from_snapshot(
    snapshot: Mapping[str, Any],
    ignore_users: Iterable[str] = (SYSTEM_USER["id"],),
    *,
    history: bool = False,
    watermark: datetime | None = None,
) -> State:
    """Stream's side from the emulator's state document (``Emulator.state()``).

    Deactivated and deleted users count as absent; soft-deleted channels as deleted;
    messages are counted per channel, deleted ones left out, and listed in Stream's
    order (by ``created_at``; with ``history``, each with its time, and members' reads:
    those later than ``watermark`` are Stream's own, not compared). ``ignore_users`` are
    Stream's own users that no database row stands for (the system messages' author).
    """
    ignored = set(ignore_users)
    users = {
        user_id: UserView(name=str(user.get("name") or ""), image=user.get("image") or None)
        for user_id, user in snapshot.get("users", {}).items()
        if user_id not in ignored and not user.get("deactivated_at") and not user.get("deleted_at")
    }
    channels: dict[str, ChannelView] = {}
    for cid, channel in snapshot.get("channels", {}).items():
        held = [m for m in snapshot.get("messages", {}).get(cid, ()) if not m.get("deleted_at")]
        held.sort(key=lambda m: instant(str(m.get("created_at") or "")))
        records = channel.get("member_records", {})
        channels[cid] = ChannelView(
            members=tuple(sorted(channel.get("members", ()))),
            data=dict(channel.get("data", {})),
            deleted=channel.get("deleted_at") is not None,
            messages=len(held),
            texts={m["id"]: m.get("text", "") for m in held},
            times={m["id"]: str(m.get("created_at") or "") for m in held} if history else None,
            reads={
                uid: held_read(record.get("last_read"), watermark)
                for uid, record in records.items()
                if record.get("last_read")
            }
            if history
            else None,
        )
    return State(users, channels)


def read_desired(
    engine: Engine,
    binding: Binding,
    repo: OutboxRepository,
    *,
    gone: Iterable[str] = (),
    messages: bool = True,
    history: bool = False,
    cutover: Cutover | None = None,
) -> State:
    """The database's side: every user and conversation of the app, channels from the map.

    A conversation never synced is keyed by the channel the naming rules predict.
    ``gone`` names conversations that may have been deleted (the repository does not
    list the channel map): those with a channel in the map are wanted deleted.
    ``messages`` counts each channel's messages (for apps that mirror them); ``history``
    lists them too, each with its ``created_at`` where the ``cutover``'s import carried
    it, and members' ``last_read`` (those the import carried).
    """
    with engine.connect() as conn:
        user_ids = reads.live_ids(binding, conn, "user")
        users = {
            uid: UserView(name=user.name, image=user.image)
            for uid, user in reads.desired_users(binding, conn, user_ids).items()
        }
        conversation_ids = reads.live_ids(binding, conn, "conversation")
        desired = reads.desired_channels(binding, conn, conversation_ids)
        counts: Counter[str] = Counter()
        texts: dict[str, dict[str, str]] = {}
        times: dict[str, dict[str, str | None]] = {}
        last_reads: dict[str, dict[str, str | None]] = {}
        mapped: dict[str, str] = {}  # messages born in Stream: under Stream's ids
        if messages or history:
            message_ids = reads.live_ids(binding, conn, "message")
            mapped = message_map.stream_ids(conn, message_ids)
            found = sorted(
                reads.desired_messages(binding, conn, message_ids).values(),
                key=lambda m: (instant(m.created_at) if m.created_at else "~", m.id),
            )
            counts.update(message.conversation_id for message in found)
            for message in found:  # by the database's ids: Stream's depend on the channel
                texts.setdefault(message.conversation_id, {})[message.id] = message.text
                kept = cutover is not None and cutover.covers(message.created_at)
                when = instant(message.created_at) if kept and message.created_at else None
                times.setdefault(message.conversation_id, {})[message.id] = when
        if history and cutover is not None:
            read_states = reads.read_states(binding, conn, list(desired))
            for conversation_id, members in read_states.items():
                last_reads[conversation_id] = {
                    user_id: (instant(moment) if cutover.covers(moment) else None)
                    for user_id, moment in members.items()
                }
    channels: dict[str, ChannelView] = {}
    for channel in desired.values():
        cid, generation = channel_key(channel, repo.channels.channel_for(channel.conversation_id))
        if cid is not None:
            conversation = channel.conversation_id
            listed = messages or history
            count = counts[conversation] if listed else None
            text = (
                _by_stream_id(texts.get(conversation, {}), generation, mapped) if listed else None
            )
            read = {} if generation else last_reads.get(conversation, {})  # a copy sets no read
            channels[cid] = ChannelView(
                members=channel.members,
                data=dict(channel.data),
                deleted=False,
                messages=count,
                texts=text,
                times=_times(times.get(conversation, {}), generation, mapped) if history else None,
                reads=read if history else None,
            )
    for conversation_id in set(gone) - set(desired):
        ref = repo.channels.channel_for(conversation_id)
        if ref is not None:
            channels[f"{ref.channel_type}:{ref.channel_id}"] = ChannelView(deleted=True)
    return State(users, channels)


def _by_stream_id(
    by_id: Mapping[str, _V], generation: int, mapped: Mapping[str, str]
) -> dict[str, _V]:
    """Messages' values keyed by their Stream ids in a channel of ``generation`` (those
    born in Stream by the ids ``mapped`` records)."""
    return {
        message_map.stream_id_of(mid, generation, mapped): value for mid, value in by_id.items()
    }


def _times(
    by_id: Mapping[str, str | None], generation: int, mapped: Mapping[str, str]
) -> dict[str, str | None]:
    """The original times the import carried, by Stream id: none in a channel created
    again (its messages were sent again, at Stream's time, and nobody's read set)."""
    kept = _by_stream_id(by_id, generation, mapped)
    return kept if not generation else dict.fromkeys(kept)


def channel_key(channel: DesiredChannel, ref: ChannelRef | None) -> tuple[str | None, int]:
    """The channel's cid (None: the product creates none) and its generation, from its
    entry in the channel map (``ref``), else as the naming rules predict it (``type:?id``
    for a conversation they can name no channel for)."""
    if ref is not None:
        return f"{ref.channel_type}:{ref.channel_id}", ref.generation
    if channel.created_by is None:
        return None, 0  # no members: the product creates no channel
    try:
        return f"{channel.channel_type}:{choose_channel_id(channel.facts)}", 0
    except InvalidStreamId:
        return f"{channel.channel_type}:?{channel.conversation_id}", 0


def held_from_stream(gateway: StreamReader, desired: State) -> State:
    """Stream's side as Stream answers for the desired users and channels.

    Stream is asked about what the database names only: users or channels Stream
    holds beyond those are not seen, and deleted channels read as absent.
    """
    users = held_users(gateway, sorted(desired.users))
    return State(users, held_channels(gateway, sorted(desired.channels)))


def held_users(gateway: StreamReader, user_ids: Sequence[str]) -> dict[str, UserView]:
    """The users Stream holds among ``user_ids`` (deactivated and deleted ones count as
    absent)."""
    return {
        user_id: UserView(name=str(user.get("name") or ""), image=user.get("image") or None)
        for user_id, user in gateway.query_users(user_ids).items()
        if not user.get("deactivated_at") and not user.get("deleted_at")
    }


def held_channels(gateway: StreamReader, cids: Sequence[str]) -> dict[str, ChannelView]:
    """The channels Stream holds among ``cids`` (deleted ones count as absent; a cid the
    naming rules could not make, ``type:?id``, names none)."""
    return {cid: held_view(remote) for cid, remote in gateway.channel_states(askable(cids)).items()}


def askable(cids: Iterable[str]) -> list[str]:
    """The cids Stream can hold: not those the naming rules could not make (``type:?id``)."""
    return [cid for cid in cids if ":?" not in cid]


def held_view(remote: RemoteChannel) -> ChannelView:
    """A channel as Stream answers it, members and data (messages not counted)."""
    return ChannelView(members=tuple(sorted(remote.members)), data=dict(remote.data))


def gather(
    engine: Engine,
    binding: Binding,
    repo: OutboxRepository,
    stream: Callable[[State], State],
    *,
    gone: Iterable[str] = (),
    messages: bool = True,
) -> tuple[State, State]:
    """Both sides: the database's (:func:`read_desired`), then ``stream(desired)``.

    ``stream`` is ``lambda _: held_from_snapshot(emulator.state())`` against the
    emulator, or ``lambda desired: held_from_stream(gateway, desired)`` against Stream.
    """
    desired = read_desired(engine, binding, repo, gone=gone, messages=messages)
    return desired, stream(desired)
