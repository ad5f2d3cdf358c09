"""What Stream receives for a database message: its body and its author.

Shared by the live mirror and the history copy, which must send the same
message the same way (same id, same author) so that neither duplicates the other.

A message whose sender Stream cannot hold (deleted in the app, or gone from it) is
sent by the system user, its sender kept in the custom field ``original_user_id``:
Stream refuses a deleted user as an author, and the history must not stop for it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from stream_outbox.app_hooks.binding import DesiredMessage
from stream_outbox.app_hooks.channel_ids import InvalidStreamId, validate_message_id
from stream_outbox.worker.errors import BadSourceData

__all__ = ["SYSTEM_USER", "SYSTEM_USER_ID", "author_of", "message_body"]

SYSTEM_USER_ID = "stream-outbox-system"
# The author of messages without a sender, and the creator of channels nobody is left in
SYSTEM_USER: dict[str, Any] = {"id": SYSTEM_USER_ID, "name": "System"}


def message_body(
    message: DesiredMessage,
    *,
    silent: bool,
    present: Collection[str] | None = None,
    generation: int = 0,
) -> dict[str, Any]:
    """The Stream message for a database message (system messages flagged ``system``).

    ``present``: the senders Stream holds (None: the sender is); a message of another
    sender keeps it in ``original_user_id``. ``generation``: its channel's (the id's).
    :class:`BadSourceData` for an id Stream cannot take.
    """
    stream_id = message.stream_id(generation)
    try:
        validate_message_id(stream_id)
    except InvalidStreamId as exc:
        raise BadSourceData(f"message {message.id}: {exc}") from None
    body: dict[str, Any] = {"id": stream_id, "text": message.text}
    if message.created_at is not None:
        body["original_created_at"] = message.created_at.isoformat()
    if message.sender_id is None:
        body["system"] = True
    elif present is not None and message.sender_id not in present:
        body["original_user_id"] = message.sender_id
    if silent:
        body["silent"] = True
    return body


def author_of(message: DesiredMessage, present: Collection[str] | None = None) -> str:
    """The Stream user a message is sent as: its sender, or the system user when it has
    none, or when Stream does not hold it (``present``: the senders Stream holds)."""
    sender = message.sender_id
    if sender is None or (present is not None and sender not in present):
        return SYSTEM_USER_ID
    return sender
