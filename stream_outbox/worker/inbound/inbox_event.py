"""What an event Stream sends says, read once where it enters (pure: no I/O).

A webhook's JSON body (``docs/webhooks/webhook_events.md`` of Stream's SDK) becomes an
:class:`InboxEvent`: its type, channel, message, user and time, pulled out into the inbox's
columns for the runner, the operators and ``inbound sync``, with the whole body kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stream_outbox.worker.stream.times import parse_time

__all__ = ["APPLIED_TYPES", "InboxEvent", "event_from"]

# The event types the inbound side applies (apply.py); any other is acknowledged and
# stored as ignored, so Stream does not retry it and operators can see it.
APPLIED_TYPES = frozenset(
    {
        "message.new",
        "message.updated",
        "message.deleted",
        "message.undeleted",
        "message.read",
        "notification.mark_read",
        "member.added",
        "member.removed",
        "member.updated",
        "channel.created",
        "channel.updated",
        "channel.deleted",
        "channel.truncated",
    }
)


@dataclass(frozen=True)
class InboxEvent:
    """One event as the inbox stores it."""

    webhook_id: str | None
    event_type: str
    cid: str | None
    message_id: str | None
    user_id: str | None
    event_at: datetime | None
    payload: dict[str, Any]

    @property
    def known(self) -> bool:
        """Whether the inbound side applies events of this type."""
        return self.event_type in APPLIED_TYPES


def _text(value: object) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value) else None


def _cid(payload: Mapping[str, Any]) -> str | None:
    cid = _text(payload.get("cid"))
    if cid:
        return cid
    channel_type, channel_id = payload.get("channel_type"), payload.get("channel_id")
    if channel_type and channel_id:
        return f"{channel_type}:{channel_id}"
    channel = payload.get("channel")
    return _text(channel.get("cid")) if isinstance(channel, Mapping) else None


def _id_of(payload: Mapping[str, Any], key: str) -> str | None:
    found = payload.get(key)
    return _text(found.get("id")) if isinstance(found, Mapping) else None


def event_from(payload: object, webhook_id: str | None = None) -> InboxEvent:
    """The event of a webhook's decoded JSON; a :class:`ValueError` in one line when it is
    not an event object (no ``type``)."""
    if not isinstance(payload, dict):
        raise ValueError("the body is not a JSON object")
    event_type = payload.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise ValueError("the event has no type")
    message = payload.get("message")
    user_id = _id_of(payload, "user") or (
        _id_of(message, "user") if isinstance(message, Mapping) else None
    )
    return InboxEvent(
        webhook_id=webhook_id or None,
        event_type=event_type[:100],
        cid=_cid(payload),
        message_id=_id_of(payload, "message"),
        user_id=user_id,
        event_at=parse_time(payload.get("created_at")),
        payload=payload,
    )
