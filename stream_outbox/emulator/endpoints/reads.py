"""``POST /channels/{type}/{id}/read`` (MarkRead): a user's read state in a channel.

Server-side the SDK names the user (``channel.mark_read(user_id, message_id=...)`` sends
``user_id``); client-side it is the token's user, who must be able to read the channel.
The member's ``last_read`` becomes the time of the call and ``last_read_message_id`` the
message given, else the channel's newest; the answer is the ``message.read`` event, which
also goes to the webhooks. A user who is no member has no read state: nothing is marked
and the answer's event is null (GetStream/stream-chat-react#2753).
"""

from __future__ import annotations

from typing import Any

from stream_outbox.emulator.endpoints.call import Call
from stream_outbox.emulator.endpoints.events import emit_read
from stream_outbox.emulator.rules.errors import input_error, not_found
from stream_outbox.emulator.rules.permissions import require


def _reader(call: Call) -> str:
    if call.actor is not None:
        return call.actor
    user = call.body.get("user")
    user_id = call.body.get("user_id") or (user.get("id") if isinstance(user, dict) else None)
    if not isinstance(user_id, str) or not user_id:
        raise input_error("user or user_id is a required field when using server side auth")
    call.store.require_live_user(user_id)
    return user_id


def mark_read(call: Call) -> dict[str, Any]:
    """Mark the channel read for one user, up to a message (default: the newest)."""
    channel = call.store.require_channel(*call.params[:2])
    user_id = _reader(call)
    require(channel, call.actor, "ReadChannel")
    messages = call.store.messages.get(channel.cid, [])
    message_id = call.body.get("message_id")
    if message_id is not None and not any(m["id"] == message_id for m in messages):
        raise not_found(f"message with id {message_id} not found")
    last_id = message_id or (messages[-1]["id"] if messages else None)
    member = channel.members.get(user_id)
    if member is None:  # no read state: nothing marked, a null event
        return {"event": None}  # (GetStream/stream-chat-react#2753)
    member["last_read"] = call.now
    member["last_read_message_id"] = last_id
    emit_read(call, channel, user_id, last_id)
    event = {
        "type": "message.read",
        "cid": channel.cid,
        "channel_type": channel.type,
        "channel_id": channel.id,
        "user": call.store.user_view(user_id),
        "last_read_message_id": last_id,
        "created_at": call.now,
    }
    return {"event": event}
