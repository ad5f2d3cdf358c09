"""Stream's webhook events as Stream sends them (``docs/webhooks/`` of the SDK repository),
for tests of the inbound side: the top-level ``type``, ``cid``, ``channel_type``,
``channel_id``, ``user``, ``created_at`` and ``request_info``, and the ``message`` or
``member`` an event carries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["T0", "at", "channel_event", "event_of", "message_event", "read_event"]

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    """``T0`` plus ``seconds``, as Stream writes times."""
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _base(kind: str, cid: str, user_id: str, when: str, client: bool | None) -> dict[str, Any]:
    channel_type, _, channel_id = cid.partition(":")
    event: dict[str, Any] = {
        "type": kind,
        "cid": cid,
        "channel_type": channel_type,
        "channel_id": channel_id,
        "user": {"id": user_id, "role": "user"},
        "created_at": when,
    }
    if client is not None:
        event["request_info"] = {"type": "client" if client else "server", "ip": "127.0.0.1"}
    return event


def message_event(
    kind: str,
    cid: str,
    message_id: str,
    user_id: str,
    text: str = "hi",
    *,
    created: float = 0,
    updated: float | None = None,
    deleted: float | None = None,
    client: bool | None = True,
) -> dict[str, Any]:
    """A ``message.new``/``updated``/``deleted`` event of message ``message_id``."""
    last = deleted if deleted is not None else updated if updated is not None else created
    event = _base(kind, cid, user_id, at(last), client)
    event["message"] = {
        "id": message_id,
        "text": text,
        "html": f"<p>{text}</p>\n",
        "type": "deleted" if deleted is not None else "regular",
        "user": {"id": user_id},
        "attachments": [],
        "created_at": at(created),
        "updated_at": at(updated if updated is not None else created),
        "deleted_at": at(deleted) if deleted is not None else None,
        "cid": cid,
    }
    if kind == "message.deleted":
        event["hard_delete"] = False
    return event


def event_of(kind: str, cid: str, held: dict[str, Any], client: bool | None) -> dict[str, Any]:
    """The message event Stream sends for ``held`` (the emulator's record of a message)."""
    updated = held.get("updated_at") or held["created_at"]
    event = _base(kind, cid, held["user_id"], updated, client)
    event["message"] = {
        "id": held["id"],
        "text": held["text"],
        "user": {"id": held["user_id"]},
        "created_at": held["created_at"],
        "updated_at": updated,
        "deleted_at": held.get("deleted_at"),
    }
    return event


def read_event(
    cid: str, user_id: str, when: float, client: bool | None = True, up_to: str | None = None
) -> dict[str, Any]:
    """A ``message.read`` event: ``user_id`` marked the channel read at ``when`` (up to
    Stream's message ``up_to``)."""
    event = _base("message.read", cid, user_id, at(when), client)
    if up_to is not None:
        event["last_read_message_id"] = up_to
    return event


def channel_event(
    kind: str, cid: str, user_id: str, member_id: str | None = None, client: bool | None = True
) -> dict[str, Any]:
    """A ``member.added``/``member.removed`` (of ``member_id``) or ``channel.updated`` event."""
    event = _base(kind, cid, user_id, at(0), client)
    if member_id is not None:
        event["member"] = {"user_id": member_id, "user": {"id": member_id}, "role": "member"}
    if kind == "channel.updated":
        event["channel"] = {"cid": cid, "name": "renamed in a client"}
    return event
