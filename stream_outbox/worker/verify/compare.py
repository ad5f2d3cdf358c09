"""Does Stream hold what the database says? The pure comparison, and the reads that feed it.

:func:`compare` takes two :class:`State` values, what the database wants and what
Stream holds, and lists every :class:`Difference`: users (name, image), channels
(members, the custom fields this product owns, deleted or not) and, when both
sides counted them, mirrored messages per channel. When both sides read a channel's
history, every message must be there exactly once, with its original ``created_at``
(those the history import carried: at or before the cut-over's watermark), in that
order, and members' ``last_read`` as the database holds it. It does no I/O.

The I/O sits apart, at the bottom: :func:`read_desired` reads the database's side
(through the binding and the channel map), :func:`held_from_snapshot` turns the
emulator's state document into Stream's side, :func:`held_from_stream` asks Stream
itself through the gateway, and :func:`gather` reads both (the demo, a verify).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine

from stream_outbox.app_hooks.binding import Binding, DesiredChannel, stream_message_id
from stream_outbox.app_hooks.channel_ids import InvalidStreamId, choose_channel_id
from stream_outbox.worker.store.cutover import Cutover
from stream_outbox.worker.store.repository import OutboxRepository
from stream_outbox.worker.stream.protocol import StreamReader
from stream_outbox.worker.sync.bodies import SYSTEM_USER
from stream_outbox.worker.sync.plan import OWNED_CHANNEL_FIELDS
from stream_outbox.worker.verify.history import (
    compare_history,
    compare_reads,
    held_read,
    instant,
)

_V = TypeVar("_V")

__all__ = [
    "ChannelView",
    "Difference",
    "State",
    "UserView",
    "compare",
    "gather",
    "held_from_snapshot",
    "held_from_stream",
    "instant",
    "read_desired",
]

ABSENT = "-"


@dataclass(frozen=True)
class UserView:
    """A user as one side sees it."""

    name: str
    image: str | None = None


@dataclass(frozen=True)
class ChannelView:
    """A channel as one side sees it; ``messages`` None when that side did not count them,
    ``texts`` (message id -> text of the messages not deleted) None when it did not read them.

    ``times`` (message id -> ``created_at``, in the side's order: Stream's, or the
    database's) and ``reads`` (member -> ``last_read``) are None when that side did not
    read the history; a None time or read is one not to compare (a message sent live
    after the watermark has Stream's time; a read Stream moved on since is Stream's own).
    """

    members: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)
    deleted: bool = False
    messages: int | None = None
    texts: Mapping[str, str] | None = None
    times: Mapping[str, str | None] | None = None
    reads: Mapping[str, str | None] | None = None


@dataclass(frozen=True)
class State:
    """Users by id and channels by cid (``type:id``), as one side sees them."""

    users: Mapping[str, UserView] = field(default_factory=dict)
    channels: Mapping[str, ChannelView] = field(default_factory=dict)


@dataclass(frozen=True)
class Difference:
    """One thing Stream holds otherwise than the database says."""

    kind: str  # "user" or "channel"
    id: str
    what: str  # "presence", "deleted", "name", "image", "members", a data field, "messages"
    database: str
    stream: str

    def __str__(self) -> str:
        where = f"{self.kind} {self.id}: {self.what}"
        return f"{where} is {self.database} in the database, {self.stream} in Stream"


# -- the pure comparison -----------------------------------------------------------------


def compare(desired: State, held: State) -> list[Difference]:
    """Every difference between the database's state and Stream's, users first, sorted by id."""
    differences: list[Difference] = []
    for user_id in sorted({*desired.users, *held.users}):
        differences += _compare_user(user_id, desired.users.get(user_id), held.users.get(user_id))
    for cid in sorted({*desired.channels, *held.channels}):
        differences += _compare_channel(cid, desired.channels.get(cid), held.channels.get(cid))
    return differences


def _compare_user(user_id: str, want: UserView | None, have: UserView | None) -> list[Difference]:
    if want is None or have is None:
        return [Difference("user", user_id, "presence", _there(want), _there(have))]
    return [
        Difference("user", user_id, what, _text(wanted), _text(held))
        for what, wanted, held in (
            ("name", want.name, have.name),
            ("image", want.image, have.image),
        )
        if wanted != held
    ]


def _compare_channel(
    cid: str, want: ChannelView | None, have: ChannelView | None
) -> list[Difference]:
    live_want = want is not None and not want.deleted
    live_have = have is not None and not have.deleted
    if not live_want and not live_have:
        return []  # deleted or never there, on both sides
    if want is None or have is None:
        return [Difference("channel", cid, "presence", _there(want), _there(have))]
    if live_want != live_have:
        return [Difference("channel", cid, "deleted", _yes(want.deleted), _yes(have.deleted))]
    found: list[Difference] = []
    if set(want.members) != set(have.members):
        found.append(
            Difference("channel", cid, "members", _list(want.members), _list(have.members))
        )
    for key in OWNED_CHANNEL_FIELDS:
        if want.data.get(key) != have.data.get(key):
            found.append(
                Difference(
                    "channel", cid, key, _text(want.data.get(key)), _text(have.data.get(key))
                )
            )
    if want.times is not None and have.times is not None:
        found += [Difference("channel", cid, *f) for f in compare_history(want.times, have.times)]
    elif want.messages is not None and have.messages is not None and want.messages != have.messages:
        found.append(Difference("channel", cid, "messages", str(want.messages), str(have.messages)))
    if want.reads is not None and have.reads is not None:
        found += [Difference("channel", cid, *f) for f in compare_reads(want.reads, have.reads)]
    if want.texts is not None and have.texts is not None:
        for message_id in sorted(set(want.texts) & set(have.texts)):
            if want.texts[message_id] != have.texts[message_id]:
                found.append(
                    Difference(
                        "channel",
                        cid,
                        f"text of {message_id}",
                        _text(want.texts[message_id]),
                        _text(have.texts[message_id]),
                    )
                )
    return found


def _there(view: object | None) -> str:
    return "missing" if view is None else "present"


def _yes(deleted: bool) -> str:
    return "deleted" if deleted else "live"


def _text(value: object) -> str:
    return ABSENT if value is None else repr(value)


def _list(ids: Iterable[str]) -> str:
    return "[" + ", ".join(sorted(ids)) + "]"


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
        user_id: UserView(str(user.get("name") or ""), user.get("image") or None)
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


# -- the reads (I/O) ---------------------------------------------------------------------


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
        user_ids = binding.live_ids(conn, "user")
        users = {
            uid: UserView(user.name, user.image)
            for uid, user in binding.desired_users(conn, user_ids).items()
        }
        conversation_ids = binding.live_ids(conn, "conversation")
        desired = binding.desired_channels(conn, conversation_ids)
        counts: Counter[str] = Counter()
        texts: dict[str, dict[str, str]] = {}
        times: dict[str, dict[str, str | None]] = {}
        reads: dict[str, dict[str, str | None]] = {}
        if messages or history:
            message_ids = binding.live_ids(conn, "message")
            found = sorted(
                binding.desired_messages(conn, message_ids).values(),
                key=lambda m: (instant(m.created_at) if m.created_at else "~", m.id),
            )
            counts.update(message.conversation_id for message in found)
            for message in found:  # by the database's ids: Stream's depend on the channel
                texts.setdefault(message.conversation_id, {})[message.id] = message.text
                kept = cutover is not None and cutover.covers(message.created_at)
                when = instant(message.created_at) if kept and message.created_at else None
                times.setdefault(message.conversation_id, {})[message.id] = when
        if history and cutover is not None:
            for conversation_id, members in binding.read_states(conn, list(desired)).items():
                reads[conversation_id] = {
                    user_id: (instant(moment) if cutover.covers(moment) else None)
                    for user_id, moment in members.items()
                }
    channels: dict[str, ChannelView] = {}
    for channel in desired.values():
        cid, generation = _cid(repo, channel)
        if cid is not None:
            conversation = channel.conversation_id
            listed = messages or history
            count = counts[conversation] if listed else None
            text = _by_stream_id(texts.get(conversation, {}), generation) if listed else None
            read = {} if generation else reads.get(conversation, {})  # a copy sets no read
            channels[cid] = ChannelView(
                channel.members,
                dict(channel.data),
                False,
                count,
                text,
                times=_times(times.get(conversation, {}), generation) if history else None,
                reads=read if history else None,
            )
    for conversation_id in set(gone) - set(desired):
        ref = repo.channels.channel_for(conversation_id)
        if ref is not None:
            channels[f"{ref.channel_type}:{ref.channel_id}"] = ChannelView(deleted=True)
    return State(users, channels)


def _by_stream_id(by_id: Mapping[str, _V], generation: int) -> dict[str, _V]:
    """Messages' values keyed by their Stream ids in a channel of ``generation``."""
    return {stream_message_id(mid, generation): value for mid, value in by_id.items()}


def _times(by_id: Mapping[str, str | None], generation: int) -> dict[str, str | None]:
    """The original times the import carried, by Stream id: none in a channel created
    again (its messages were sent again, at Stream's time, and nobody's read set)."""
    kept = _by_stream_id(by_id, generation)
    return kept if not generation else dict.fromkeys(kept)


def _cid(repo: OutboxRepository, channel: DesiredChannel) -> tuple[str | None, int]:
    """The channel's cid (None: the product creates none) and its generation."""
    ref = repo.channels.channel_for(channel.conversation_id)
    if ref is not None:
        return f"{ref.channel_type}:{ref.channel_id}", ref.generation
    if channel.created_by is None:
        return None, 0  # no members: the product creates no channel
    try:
        return f"{channel.channel_type}:{choose_channel_id(channel.facts)}", 0
    except InvalidStreamId:
        return f"{channel.channel_type}:?{channel.conversation_id}", 0


def held_from_stream(
    gateway: StreamReader,
    desired: State,
    *,
    history: bool = False,
    watermark: datetime | None = None,
) -> State:
    """Stream's side as Stream answers for the desired users and channels (with
    ``history``, each channel's messages and members' reads; reads Stream moved on after
    the ``watermark`` are not compared).

    Stream is asked about what the database names only: users or channels Stream
    holds beyond those are not seen, and deleted channels read as absent.
    """
    users = {
        user_id: UserView(str(user.get("name") or ""), user.get("image") or None)
        for user_id, user in gateway.query_users(sorted(desired.users)).items()
        if not user.get("deactivated_at") and not user.get("deleted_at")
    }
    channels: dict[str, ChannelView] = {}
    for cid in sorted(desired.channels):
        channel_type, _, channel_id = cid.partition(":")
        remote = gateway.channel_state(channel_type, channel_id)
        if remote is None:
            continue
        view = ChannelView(tuple(sorted(remote.members)), dict(remote.data))
        if history:
            held = gateway.channel_history(channel_type, channel_id)
            view = replace(
                view,
                messages=len(held.messages),
                times=dict(held.messages),
                reads={uid: held_read(last, watermark) for uid, last in held.reads.items() if last},
            )
        channels[cid] = view
    return State(users, channels)


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
