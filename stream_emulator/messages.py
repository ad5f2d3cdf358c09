"""Message endpoints: send, get many, get one."""

from __future__ import annotations

import uuid
from typing import Any

from stream_emulator.call import Call
from stream_emulator.errors import MESSAGE_TOO_LONG, StreamError, input_error, not_found
from stream_emulator.store import MESSAGE_SERVER_FIELDS, ChannelRecord, Store
from stream_emulator.validation import MAX_MESSAGE_ID_LENGTH, MAX_MESSAGE_LENGTH


def _checked(store: Store, message: Any) -> tuple[dict[str, Any], str, str, str]:
    """Validate a message payload; return it with its ``id``, ``user_id`` and ``text``."""
    if not isinstance(message, dict):
        raise input_error("message is a required field")
    user = message.get("user")
    user_id = message.get("user_id") or (user.get("id") if isinstance(user, dict) else None)
    if not isinstance(user_id, str) or not user_id:
        raise input_error("message.user or message.user_id is a required field")
    if user_id not in store.users:
        raise input_error(f'user "{user_id}" does not exist')
    message_id = message.get("id") or str(uuid.uuid4())
    if not isinstance(message_id, str) or len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise input_error(f"message.id must be a string of at most {MAX_MESSAGE_ID_LENGTH}")
    if message_id in store.message_cids:
        raise input_error(f"a message with ID {message_id} already exists")
    text = message.get("text", "")
    if not isinstance(text, str):
        raise input_error("message.text must be a string")
    if len(text) > MAX_MESSAGE_LENGTH:
        raise StreamError(
            400, MESSAGE_TOO_LONG, f"message is too long, max length is {MAX_MESSAGE_LENGTH}"
        )
    return message, message_id, user_id, text


def create_message(store: Store, channel: ChannelRecord, message: Any, now: str) -> dict[str, Any]:
    """Validate and store a message in ``channel``; return the stored record.

    The server assigns ``created_at``: Stream documents client timestamps only for
    its dashboard import format, not for the send-message endpoint.
    """
    payload, message_id, user_id, text = _checked(store, message)
    record: dict[str, Any] = {
        "attachments": [],
        "mentioned_users": [],
        "latest_reactions": [],
        "own_reactions": [],
        "reaction_counts": {},
        "reaction_scores": {},
        "reply_count": 0,
        "silent": False,
    }
    record.update({k: v for k, v in payload.items() if k not in MESSAGE_SERVER_FIELDS})
    record.update(
        {
            "id": message_id,
            "text": text,
            "type": "regular",
            "user_id": user_id,
            "cid": channel.cid,
            "created_at": now,
            "updated_at": now,
        }
    )
    store.messages.setdefault(channel.cid, []).append(record)
    store.message_cids[message_id] = channel.cid
    channel.updated_at = now
    return record


def send_message(call: Call) -> dict[str, Any]:
    """``POST /channels/{type}/{id}/message`` (SendMessage)."""
    channel = call.store.require_channel(*call.params[:2])
    record = create_message(call.store, channel, call.body.get("message"), call.now)
    return {"message": call.store.message_view(record)}


def get_many_messages(call: Call) -> dict[str, Any]:
    """``GET /channels/{type}/{id}/messages?ids=a,b`` (GetManyMessages)."""
    channel = call.store.require_channel(*call.params[:2])
    wanted = [i for i in call.query.get("ids", "").split(",") if i]
    by_id = {m["id"]: m for m in call.store.messages.get(channel.cid, [])}
    found = [call.store.message_view(by_id[i]) for i in wanted if i in by_id]
    return {"messages": found}


def get_message(call: Call) -> dict[str, Any]:
    """``GET /messages/{id}`` (GetMessage)."""
    message_id = call.params[0]
    cid = call.store.message_cids.get(message_id)
    if cid is None:
        raise not_found(f"message with id {message_id} not found")
    for message in call.store.messages.get(cid, []):
        if message["id"] == message_id:
            return {"message": call.store.message_view(message)}
    raise not_found(f"message with id {message_id} not found")
