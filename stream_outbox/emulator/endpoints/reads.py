"""Read state: a member marks a channel read (server-side, for a ``user_id``)."""

from __future__ import annotations

from typing import Any

from stream_outbox.emulator.endpoints.call import Call
from stream_outbox.emulator.rules.errors import input_error, not_found


def mark_read(call: Call) -> dict[str, Any]:
    """``POST /channels/{type}/{id}/read`` (MarkRead): the member's ``last_read`` set to now
    and ``last_read_message_id`` to ``message_id`` (the channel's newest message when none
    is given), answered with the ``message.read`` event.

    A user who is no member has no read state: nothing is marked and the answer's event
    is null (GetStream/stream-chat-react#2753). A ``message_id`` the channel does not hold
    is not found (inferred: Stream documents the field, not that error).
    """
    channel = call.store.require_channel(*call.params[:2])
    user = call.body.get("user")
    user_id = call.body.get("user_id") or (user.get("id") if isinstance(user, dict) else None)
    if not isinstance(user_id, str) or not user_id:
        raise input_error("either user or user_id must be provided when using server side auth.")
    member = channel.members.get(user_id)
    if member is None:
        return {"event": None}
    messages = call.store.messages.get(channel.cid, [])
    message_id = call.body.get("message_id")
    if message_id and not any(m["id"] == message_id for m in messages):
        raise not_found(f"message with id {message_id} not found")
    read_up_to = message_id or (messages[-1]["id"] if messages else None)
    member.update({"last_read": call.now, "last_read_message_id": read_up_to})
    event = {
        "type": "message.read",
        "cid": channel.cid,
        "channel_id": channel.id,
        "channel_type": channel.type,
        "user": call.store.user_view(user_id),
        "last_read_message_id": read_up_to,
        "created_at": call.now,
    }
    return {"event": event}
