"""Stream's webhook events as values, and the decisions that need no database (pure).

:func:`parse_event` reads one event as Stream sends it (``docs/webhooks/`` of the SDK
repository: ``type``, ``cid``, ``message`` with its ``id``, ``text``, ``user`` and times,
``user``, ``member``, ``created_at``, ``request_info``) into an :class:`InboundEvent`,
refusing with one line what can never be applied. :func:`own_echo` tells the mirror's
own calls coming back; :func:`edit_applies` is the conflict rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stream_outbox.worker.errors import PermanentError
from stream_outbox.worker.store.message_map import MapEntry, app_born_id
from stream_outbox.worker.sync.bodies import SYSTEM_USER_ID

__all__ = [
    "CHANNEL_EVENTS",
    "MESSAGE_EVENTS",
    "BadEvent",
    "InboundEvent",
    "InboundMessage",
    "edit_applies",
    "own_echo",
    "parse_event",
]

MESSAGE_EVENTS = frozenset({"message.new", "message.updated", "message.deleted"})
# Changes of who is in a conversation, or of its channel: the database is the authority
CHANNEL_EVENTS = frozenset({"member.added", "member.removed", "channel.updated"})


class BadEvent(PermanentError):
    """A Stream event lacks what applying it needs."""


@dataclass(frozen=True)
class InboundMessage:
    """A message as an event carries it."""

    id: str
    text: str
    user_id: str | None
    created_at: datetime | None
    updated_at: datetime | None
    deleted_at: datetime | None

    @property
    def app_id(self) -> str | None:
        """The app's id inside an id the mirror gave (``msg-{id}``), else ``None``."""
        return app_born_id(self.id)


@dataclass(frozen=True)
class InboundEvent:
    """One Stream event, the parts the applier reads."""

    type: str
    channel_type: str | None
    channel_id: str | None
    user_id: str | None
    created_at: datetime | None
    message: InboundMessage | None = None
    member_id: str | None = None
    hard_delete: bool = False
    from_client: bool | None = None  # request_info.type == "client"; None: not said
    channel: Mapping[str, Any] | None = None  # the channel as a channel event carries it
    read_message_id: str | None = None  # message.read: the message read up to, if said
    from_state: bool = False  # found in Stream's state by `inbound sync`, not a webhook

    @property
    def cid(self) -> str | None:
        """Stream's ``type:id`` of the event's channel."""
        if self.channel_type is None or self.channel_id is None:
            return None
        return f"{self.channel_type}:{self.channel_id}"


def _time(value: Any, what: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise BadEvent(f"{what} is not a time: {str(value)[:40]!r}") from None


def _id_of(user: Any) -> str | None:
    if isinstance(user, Mapping) and user.get("id") not in (None, ""):
        return str(user["id"])
    return None


def _message(raw: Any, kind: str) -> InboundMessage:
    if not isinstance(raw, Mapping) or not raw.get("id"):
        raise BadEvent(f"{kind} without a message id")
    return InboundMessage(
        id=str(raw["id"]),
        text=str(raw.get("text") or ""),
        user_id=_id_of(raw.get("user")),
        created_at=_time(raw.get("created_at"), "message.created_at"),
        updated_at=_time(raw.get("updated_at"), "message.updated_at"),
        deleted_at=_time(raw.get("deleted_at"), "message.deleted_at"),
    )


def _channel(event: Mapping[str, Any]) -> tuple[str | None, str | None]:
    kind, cid = event.get("channel_type"), event.get("channel_id")
    if (kind is None or cid is None) and isinstance(event.get("cid"), str):
        kind, _, cid = str(event["cid"]).partition(":")
    return (str(kind) if kind else None), (str(cid) if cid else None)


def parse_event(event: Mapping[str, Any]) -> InboundEvent:
    """One event as Stream sends it; :class:`BadEvent` for one without a type, or a
    message event without its message."""
    kind = event.get("type")
    if not isinstance(kind, str) or not kind:
        raise BadEvent("event without a type")
    channel_type, channel_id = _channel(event)
    info = event.get("request_info")
    client = info.get("type") == "client" if isinstance(info, Mapping) else None
    member = event.get("member")
    member_id = None
    if isinstance(member, Mapping):
        member_id = str(member.get("user_id") or _id_of(member.get("user")) or "") or None
    message = _message(event.get("message"), kind) if kind in MESSAGE_EVENTS else None
    user_id = _id_of(event.get("user")) or (message.user_id if message else None)
    return InboundEvent(
        type=kind,
        channel_type=channel_type,
        channel_id=channel_id,
        user_id=user_id,
        created_at=_time(event.get("created_at"), "created_at"),
        message=message,
        member_id=member_id,
        hard_delete=bool(event.get("hard_delete")),
        from_client=client,
        channel=event["channel"] if isinstance(event.get("channel"), Mapping) else None,
        read_message_id=str(event.get("last_read_message_id") or "") or None,
        from_state=event.get("sync") is True,
    )


def own_echo(event: InboundEvent, entry: MapEntry | None) -> bool:
    """Whether the event is the mirror's own call coming back (nothing to write).

    Stream says who called (``request_info.type``): a client's call never is, any other
    (the mirror's server-side sends, edits, reads and member changes) is. Where the event
    does not say: one by the system user, and a message the mirror sent (an id it gave,
    ``msg-…``/``msgN-…``, or one the map says was born in the app). An event ``inbound
    sync`` found in Stream's state says nothing of who called: a message the mirror sent
    is then no echo, and the level checks decide (a text set only where it differs and
    is newer, a message deleted only where it is live), so the mirror's own sends still
    write nothing.
    """
    if event.from_client is not None:
        return not event.from_client
    if event.user_id == SYSTEM_USER_ID:
        return True
    if event.message is None:
        return False
    if event.message.user_id == SYSTEM_USER_ID:
        return True
    if event.from_state:
        return False
    if event.message.app_id is not None:
        return True
    return entry is not None and not entry.born_in_stream


def edit_applies(entry: MapEntry | None, updated_at: datetime | None) -> bool:
    """The conflict rule for an edit made in Stream: a deleted message takes none (a
    deletion wins over an edit), and an edit older than the last one applied, either
    side, loses (the later ``updated_at`` wins)."""
    if entry is None:
        return True
    if entry.deleted_at is not None:
        return False
    if entry.updated_at is None or updated_at is None:
        return True
    return updated_at > entry.updated_at
