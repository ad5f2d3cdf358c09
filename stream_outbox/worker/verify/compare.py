"""Does Stream hold what the database says? The pure comparison.

:func:`compare` takes two :class:`State` values, what the database wants and what
Stream holds, and lists every :class:`Difference`: users (name, image), channels
(members, the custom fields this product owns, deleted or not) and, when both
sides counted them, mirrored messages per channel. When both sides read a channel's
history, every message must be there exactly once, with its original ``created_at``
(those the Stream import carried: at or before the cut-over's watermark), in that
order, and members' ``last_read`` as the database holds it (:mod:`.history`). It
does no I/O: the two sides are read by :mod:`.readers`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stream_outbox.worker.sync.plan import OWNED_CHANNEL_FIELDS
from stream_outbox.worker.verify.history import compare_history, compare_reads

__all__ = ["ChannelView", "Difference", "State", "UserView", "compare"]

ABSENT = "-"


@dataclass(frozen=True, kw_only=True)
class UserView:
    """A user as one side sees it."""

    name: str
    image: str | None = None


@dataclass(frozen=True, kw_only=True)
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


def compare(*, desired: State, held: State) -> list[Difference]:
    """Every difference between the database's state and Stream's, users first, sorted by id."""
    differences: list[Difference] = []
    for user_id in sorted({*desired.users, *held.users}):
        differences += _compare_user(
            user_id, want=desired.users.get(user_id), have=held.users.get(user_id)
        )
    for cid in sorted({*desired.channels, *held.channels}):
        differences += _compare_channel(
            cid, want=desired.channels.get(cid), have=held.channels.get(cid)
        )
    return differences


def _compare_user(
    user_id: str, *, want: UserView | None, have: UserView | None
) -> list[Difference]:
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
    cid: str, *, want: ChannelView | None, have: ChannelView | None
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
        found += [
            Difference("channel", cid, *f)
            for f in compare_history(want=want.times, have=have.times)
        ]
    elif want.messages is not None and have.messages is not None and want.messages != have.messages:
        found.append(Difference("channel", cid, "messages", str(want.messages), str(have.messages)))
    if want.reads is not None and have.reads is not None:
        found += [
            Difference("channel", cid, *f) for f in compare_reads(want=want.reads, have=have.reads)
        ]
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
