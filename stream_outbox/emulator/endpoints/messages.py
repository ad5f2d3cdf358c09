"""Message endpoints: send, get many, get one, update, partial update, delete, undelete.

A user-token call acts as its user: the message's author is the caller, and the channel's
permissions apply (``rules/permissions.py``). Each change is an event for the webhooks.
"""

from __future__ import annotations

import uuid
from typing import Any

from stream_outbox.emulator.endpoints.call import Call
from stream_outbox.emulator.endpoints.events import emit_message
from stream_outbox.emulator.rules.errors import (
    MESSAGE_TOO_LONG,
    StreamError,
    input_error,
    not_found,
    user_deactivated,
    user_deleted,
)
from stream_outbox.emulator.rules.permissions import require, require_own_message
from stream_outbox.emulator.rules.validation import (
    MAX_MESSAGE_LENGTH,
    check_custom_size,
    check_message_id,
    clamp_limit,
)
from stream_outbox.emulator.state.store import (
    MESSAGE_DERIVED_FIELDS,
    MESSAGE_SERVER_FIELDS,
    ChannelRecord,
    Store,
    new_message,
)

# A message's own fields; the rest is custom data (at most 5 KB).
MESSAGE_BUILTIN_FIELDS = (
    MESSAGE_SERVER_FIELDS
    | MESSAGE_DERIVED_FIELDS
    | {
        "id",
        "text",
        "html",
        "attachments",
        "mentioned_users",
        "parent_id",
        "show_in_channel",
        "quoted_message_id",
        "silent",
        "pinned",
        "pin_expires",
        "skip_push",
        "restricted_visibility",
        "latest_reactions",
        "own_reactions",
        "reaction_counts",
        "reaction_scores",
        "reply_count",
    }
)

_NOT_STORED = MESSAGE_SERVER_FIELDS | MESSAGE_DERIVED_FIELDS
# What a whole-message update keeps: the server's fields and the counts it keeps itself
_KEPT_ON_UPDATE = MESSAGE_SERVER_FIELDS | {
    "id",
    "message_text_updated_at",
    "reply_count",
    "latest_reactions",
    "own_reactions",
    "reaction_counts",
    "reaction_scores",
}


def _author(store: Store, message: dict[str, Any]) -> str:
    """The author's id: an existing user, neither deleted nor deactivated."""
    user = message.get("user")
    user_id = message.get("user_id") or (user.get("id") if isinstance(user, dict) else None)
    if not isinstance(user_id, str) or not user_id:
        raise input_error("message.user or message.user_id is a required field")
    if store.was_deleted(user_id):
        raise user_deleted(user_id)
    author = store.users.get(user_id)
    if author is None:
        raise input_error(f'user "{user_id}" does not exist')
    if author.get("deactivated_at"):
        raise user_deactivated(user_id)
    return user_id


def _checked(store: Store, message: Any) -> tuple[dict[str, Any], str, str, str]:
    """Validate a message payload; return it with its ``id``, ``user_id`` and ``text``."""
    if not isinstance(message, dict):
        raise input_error("message is a required field")
    user_id = _author(store, message)
    given = message.get("id")
    message_id = str(uuid.uuid4()) if given in (None, "") else check_message_id(given)
    if store.message_id_taken(message_id):
        raise input_error(f"a message with ID {message_id} already exists")
    check_custom_size("message", message, MESSAGE_BUILTIN_FIELDS)
    return message, message_id, user_id, _checked_text(message.get("text", ""))


def _checked_text(text: Any) -> str:
    """A message text Stream accepts: a string of at most the maximum length."""
    if not isinstance(text, str):
        raise input_error("message.text must be a string")
    if len(text) > MAX_MESSAGE_LENGTH:
        raise StreamError(
            400, MESSAGE_TOO_LONG, f"message is too long, max length is {MAX_MESSAGE_LENGTH}"
        )
    return text


def create_message(store: Store, channel: ChannelRecord, message: Any, now: str) -> dict[str, Any]:
    """Validate and store a message in ``channel``; return the stored record.

    The server assigns ``created_at``: Stream documents client timestamps only for
    its dashboard import format, not for the send-message endpoint.
    """
    payload, message_id, user_id, text = _checked(store, message)
    record = new_message()
    record.update({k: v for k, v in payload.items() if k not in _NOT_STORED})
    record.update(
        {
            "id": message_id,
            "text": text,
            "type": "reply" if payload.get("parent_id") else "regular",
            "user_id": user_id,
            "cid": channel.cid,
            "created_at": now,
            "updated_at": now,
        }
    )
    _count_reply(store, channel, record)
    store.messages.setdefault(channel.cid, []).append(record)
    store.message_cids[message_id] = channel.cid
    channel.updated_at = channel.last_message_at = now
    return record


def _count_reply(store: Store, channel: ChannelRecord, record: dict[str, Any]) -> None:
    """A reply (``parent_id``) counts in its parent's ``reply_count``; the parent must be a
    message of the channel."""
    parent_id = record.get("parent_id")
    if not parent_id:
        return
    if store.message_cids.get(parent_id) != channel.cid:
        raise input_error(f"parent message {parent_id} does not exist in channel {channel.cid}")
    parent = next(m for m in store.messages[channel.cid] if m["id"] == parent_id)
    parent["reply_count"] = parent.get("reply_count", 0) + 1


def as_caller(call: Call, message: Any) -> Any:
    """A client-side message is the caller's, whatever user the body names."""
    if call.actor is None or not isinstance(message, dict):
        return message
    return {**{k: v for k, v in message.items() if k != "user"}, "user_id": call.actor}


def send_message(call: Call) -> dict[str, Any]:
    """``POST /channels/{type}/{id}/message`` (SendMessage)."""
    channel = call.store.require_channel(*call.params[:2])
    require(channel, call.actor, "CreateMessage")
    message = as_caller(call, call.body.get("message"))
    record = create_message(call.store, channel, message, call.now)
    emit_message(call, "message.new", channel, record)
    if record.get("parent_id"):  # watchers see the parent's new reply_count
        parent = _stored(call.store, record["parent_id"])
        emit_message(call, "message.updated", channel, parent, live_only=True)
    return {"message": call.store.message_view(record)}


def get_many_messages(call: Call) -> dict[str, Any]:
    """``GET /channels/{type}/{id}/messages?ids=a,b`` (GetManyMessages)."""
    channel = call.store.require_channel(*call.params[:2])
    require(channel, call.actor, "ReadChannel")
    wanted = [i for i in call.query.get("ids", "").split(",") if i]
    by_id = {m["id"]: m for m in call.store.messages.get(channel.cid, [])}
    found = [call.store.message_view(by_id[i]) for i in wanted if i in by_id]
    return {"messages": found}


def _stored(store: Store, message_id: str) -> dict[str, Any]:
    """The stored record of a message; 404 (code 16) when Stream has none."""
    cid = store.message_cids.get(message_id)
    for message in store.messages.get(cid or "", []):
        if message["id"] == message_id:
            return message
    raise not_found(f"message with id {message_id} not found")


def get_replies(call: Call) -> dict[str, Any]:
    """``GET /messages/{id}/replies`` (GetReplies): a thread's replies, oldest first (the
    latest ``limit``, default 25)."""
    parent = _stored(call.store, call.params[0])
    require(_channel_of(call, parent), call.actor, "ReadChannel")
    limit = clamp_limit(call.query.get("limit"), 25, 300)
    thread = call.store.messages.get(parent["cid"], [])
    replies = [m for m in thread if m.get("parent_id") == parent["id"]]
    return {"messages": [call.store.message_view(m) for m in replies[-limit:] if limit > 0]}


def _channel_of(call: Call, record: dict[str, Any]) -> ChannelRecord:
    return call.store.channels[record["cid"]]


def get_message(call: Call) -> dict[str, Any]:
    """``GET /messages/{id}`` (GetMessage)."""
    record = _stored(call.store, call.params[0])
    require(_channel_of(call, record), call.actor, "ReadChannel")
    return {"message": call.store.message_view(record)}


def update_message(call: Call) -> dict[str, Any]:
    """``POST /messages/{id}`` (UpdateMessage): the whole message replaced (its text and
    custom data); the id, channel, author, type and times stay the server's."""
    record = _stored(call.store, call.params[0])
    channel = _channel_of(call, record)
    require_own_message(channel, record, call.actor, "UpdateMessage")
    message = call.body.get("message")
    if not isinstance(message, dict):
        raise input_error("message is a required field")
    if message.get("id") not in (None, record["id"]):
        raise input_error("message.id does not match the message being updated")
    if record.get("deleted_at"):
        raise input_error("a deleted message cannot be updated")
    text = _checked_text(message.get("text", ""))
    kept = {k: v for k, v in record.items() if k in _KEPT_ON_UPDATE}
    fresh = new_message(**{k: v for k, v in message.items() if k not in _NOT_STORED})
    fresh.update(kept)
    fresh.update({"text": text, "updated_at": call.now})
    _mark_edited(fresh, record, call.now)
    check_custom_size("message", fresh, MESSAGE_BUILTIN_FIELDS)
    record.clear()
    record.update(fresh)
    emit_message(call, "message.updated", channel, record, _named_user(message))
    return {"message": call.store.message_view(record)}


def _mark_edited(updated: dict[str, Any], before: dict[str, Any], now: str) -> None:
    """A changed text is an edit: ``message_text_updated_at`` (stream-chat-react's "Edited")."""
    if updated.get("text") != before.get("text"):
        updated["message_text_updated_at"] = now


def _named_user(body: dict[str, Any]) -> str | None:
    """The acting user a server-side call names (``user_id`` or ``user.id``)."""
    user = body.get("user")
    named = body.get("user_id") or (user.get("id") if isinstance(user, dict) else None)
    return named if isinstance(named, str) else None


def update_message_partial(call: Call) -> dict[str, Any]:
    """``PUT /messages/{id}`` (UpdateMessagePartial): ``set`` and ``unset`` fields.

    The id, channel, author, type and timestamps are the server's; a deleted message
    cannot be edited.
    """
    record = _stored(call.store, call.params[0])
    channel = _channel_of(call, record)
    require_own_message(channel, record, call.actor, "UpdateMessage")
    set_ = call.body.get("set") or {}
    unset = call.body.get("unset") or []
    if not isinstance(set_, dict) or not isinstance(unset, list):
        raise input_error("set must be an object and unset a list")
    touched = set(set_) | set(unset)
    server = sorted(touched & (MESSAGE_SERVER_FIELDS | {"id"}))
    if server:
        raise input_error(f"{server[0]} cannot be updated")
    if record.get("deleted_at"):
        raise input_error("a deleted message cannot be updated")
    _checked_text(set_.get("text", record["text"]))
    updated = {k: v for k, v in record.items() if k not in unset}
    updated.update(set_)
    check_custom_size("message", updated, MESSAGE_BUILTIN_FIELDS)
    old_text = record.get("text")
    for key in unset:
        record.pop(key, None)
    record.update(set_)
    _mark_edited(record, {**record, "text": old_text}, call.now)
    record["updated_at"] = call.now
    emit_message(call, "message.updated", channel, record, _named_user(call.body))
    return {"message": call.store.message_view(record)}


def undelete_message(call: Call) -> dict[str, Any]:
    """``POST /messages/{id}/undelete`` (UndeleteMessage): a soft-deleted message back, as
    it was before (``undeleted_by``: the user doing it); one not deleted is refused."""
    record = _stored(call.store, call.params[0])
    user_id = call.body.get("undeleted_by")
    if not isinstance(user_id, str) or not user_id:
        raise input_error("undeleted_by is a required field")
    if user_id not in call.store.users:
        raise input_error(f"user {user_id} does not exist")
    if not record.get("deleted_at"):
        raise input_error(f"message {record['id']} is not deleted")
    record.pop("deleted_at")
    record.update({"type": "regular", "updated_at": call.now})
    emit_message(call, "message.undeleted", _channel_of(call, record), record, user_id)
    return {"message": call.store.message_view(record)}


def delete_message(call: Call) -> dict[str, Any]:
    """``DELETE /messages/{id}`` (DeleteMessage): soft by default; ``hard=true`` removes it.
    Its ``message.deleted`` event carries ``hard_delete`` and the message as deleted."""
    record = _stored(call.store, call.params[0])
    channel = _channel_of(call, record)
    require_own_message(channel, record, call.actor, "DeleteMessage")
    deleted_by = call.query.get("deleted_by")
    if call.query.get("hard") in ("true", "1"):
        call.store.messages[record["cid"]].remove(record)
        del call.store.message_cids[record["id"]]
        gone = {**record, "type": "deleted", "deleted_at": call.now}
        emit_message(call, "message.deleted", channel, gone, deleted_by, hard_delete=True)
        return {"message": call.store.message_view(record)}
    if not record.get("deleted_at"):
        record.update({"type": "deleted", "deleted_at": call.now, "updated_at": call.now})
        emit_message(call, "message.deleted", channel, record, deleted_by, hard_delete=False)
    return {"message": call.store.message_view(record)}
