"""What Stream receives for a database message: its body and its author.

Shared by the live mirror and the history import, which must send the same
message the same way (same id, same author) so that neither duplicates the other.
"""

from __future__ import annotations

from typing import Any

from app_hooks.binding import DesiredMessage

__all__ = ["SYSTEM_USER", "SYSTEM_USER_ID", "author_of", "message_body"]

SYSTEM_USER_ID = "stream-outbox-system"
# The author of messages without a sender, and the creator of channels nobody is left in
SYSTEM_USER: dict[str, Any] = {"id": SYSTEM_USER_ID, "name": "System"}


def message_body(message: DesiredMessage, *, silent: bool) -> dict[str, Any]:
    """The Stream message for a database message (system messages flagged ``system``)."""
    body: dict[str, Any] = {"id": message.stream_id, "text": message.text}
    if message.created_at is not None:
        body["original_created_at"] = message.created_at.isoformat()
    if message.sender_id is None:
        body["system"] = True
    if silent:
        body["silent"] = True
    return body


def author_of(message: DesiredMessage) -> str:
    """The Stream user a message is sent as (the system user when it has no sender)."""
    return message.sender_id or SYSTEM_USER_ID
