"""A user's lifecycle: deactivate, reactivate, delete (soft, pruning, hard) and restore.

Stream's rules (sources in stream_outbox/emulator/README.md): a deleted user's id cannot be
upserted or used until ``restore_users`` (soft deletes only); a soft delete takes the
user out of every channel and a restore does not put the memberships back; a
hard-deleted user is gone but its id stays taken. Batch deletes and deactivations
(at most 100 ids) answer an async task, followed with ``GET /tasks/{id}``.
"""

from __future__ import annotations

from typing import Any

from stream_outbox.emulator.endpoints.call import Call
from stream_outbox.emulator.endpoints.events import emit_user
from stream_outbox.emulator.rules.errors import input_error, user_deleted
from stream_outbox.emulator.rules.validation import (
    MAX_USERS_PER_DEACTIVATE,
    MAX_USERS_PER_DELETE,
    MAX_USERS_PER_RESTORE,
    as_bool,
    check_batch,
    check_user_id,
)
from stream_outbox.emulator.state.store import USER_SERVER_FIELDS, Store

DELETE_MODES = ("soft", "pruning", "hard")
# What a pruning delete keeps of a user ("nullifies user information").
_PRUNE_KEEPS = USER_SERVER_FIELDS | {"id", "role"}


def _deactivate(store: Store, user_id: str, now: str, mark_messages_deleted: bool) -> None:
    user = store.require_live_user(user_id)
    user["deactivated_at"] = now
    user["updated_at"] = now
    if mark_messages_deleted:
        _mark_messages_deleted(store, user_id, now)


def _mark_messages_deleted(store: Store, user_id: str, now: str) -> None:
    for messages in store.messages.values():
        for message in messages:
            if message["user_id"] == user_id and message.get("deleted_at") is None:
                message["deleted_at"] = now
                message["type"] = "deleted"


def _hard_delete_messages(store: Store, user_id: str) -> None:
    for cid, messages in store.messages.items():
        kept = [m for m in messages if m["user_id"] != user_id]
        for message in messages:
            if message["user_id"] == user_id:
                store.message_cids.pop(message["id"], None)
        store.messages[cid] = kept


def deactivate_user(call: Call) -> dict[str, Any]:
    """``POST /users/{id}/deactivate`` (DeactivateUser)."""
    user_id = check_user_id(call.params[0], "user_id")
    _deactivate(call.store, user_id, call.now, as_bool(call.body.get("mark_messages_deleted")))
    emit_user(call, "user.deactivated", user_id)
    return {"user": dict(call.store.users[user_id])}


def deactivate_users(call: Call) -> dict[str, Any]:
    """``POST /users/deactivate`` (DeactivateUsers): up to 100 ids, answers a task."""
    user_ids = check_batch(call.body.get("user_ids"), "user_ids", MAX_USERS_PER_DEACTIVATE)
    if not user_ids:
        raise input_error("user_ids is a required field")
    for user_id in user_ids:
        call.store.require_live_user(check_user_id(user_id, "user_ids[]"))
    mark = as_bool(call.body.get("mark_messages_deleted"))
    for user_id in user_ids:
        _deactivate(call.store, user_id, call.now, mark)
        emit_user(call, "user.deactivated", user_id)
    # The users as they are now, each with its deactivated_at, as DeactivateUser answers one
    result = {"users": [dict(call.store.require_live_user(uid)) for uid in user_ids]}
    return {"task_id": call.store.add_task(result, call.now, call.clock, call.task_seconds)}


def reactivate_user(call: Call) -> dict[str, Any]:
    """``POST /users/{id}/reactivate`` (ReactivateUser)."""
    user_id = check_user_id(call.params[0], "user_id")
    user = call.store.require_live_user(user_id)
    user.pop("deactivated_at", None)
    if call.body.get("name"):
        user["name"] = call.body["name"]
    user["updated_at"] = call.now
    emit_user(call, "user.reactivated", user_id)
    return {"user": dict(user)}


def _delete_user(store: Store, user_id: str, now: str, mode: str, messages: str | None) -> None:
    """Delete one user: ``soft`` / ``pruning`` mark it deleted, ``hard`` removes it (its
    id stays taken); every mode takes it out of every channel."""
    store.remove_memberships(user_id)
    if mode == "hard" or messages == "hard":
        _hard_delete_messages(store, user_id)
    elif messages:
        _mark_messages_deleted(store, user_id, now)
    if mode == "hard":
        store.users.pop(user_id, None)
        store.user_seq.pop(user_id, None)
        store.deleted_user_ids[user_id] = now
        return
    user = store.users[user_id]
    if mode == "pruning":
        for name in [k for k in user if k not in _PRUNE_KEEPS]:
            del user[name]
    user["deleted_at"] = user.get("deleted_at") or now
    user["updated_at"] = now


def delete_user(call: Call) -> dict[str, Any]:
    """``DELETE /users/{id}`` (DeleteUser): soft by default, ``hard_delete=true`` for hard."""
    user_id = check_user_id(call.params[0], "user_id")
    user = dict(call.store.require_user(user_id))
    hard = as_bool(call.query.get("hard_delete", False))
    marks = as_bool(call.query.get("mark_messages_deleted", False))
    mode, messages = ("hard", "hard") if hard else ("soft", "soft" if marks else None)
    _delete_user(call.store, user_id, call.now, mode, messages)
    emit_user(call, "user.deleted", user_id)
    if hard:
        user["deleted_at"] = call.now
        return {"user": user}
    return {"user": dict(call.store.users[user_id])}


def _delete_options(body: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """``user``, ``messages`` and ``conversations`` of a batch delete, checked."""
    mode = body.get("user") or "soft"
    if mode not in DELETE_MODES:
        raise input_error('user must be one of "soft", "pruning" or "hard"')
    messages = body.get("messages") or None
    if messages is not None and messages not in DELETE_MODES:
        raise input_error('messages must be one of "soft", "pruning" or "hard"')
    conversations = body.get("conversations") or None
    if conversations is not None and conversations not in ("soft", "hard"):
        raise input_error('conversations must be one of "soft" or "hard"')
    if mode == "hard" and (messages != "hard" or conversations != "hard"):
        raise input_error(
            "hard deleting users requires messages and conversations to be hard deleted as well"
        )
    return mode, messages, conversations


def _delete_conversations(store: Store, user_id: str, hard: bool, now: str) -> None:
    """Delete the user's one-to-one channels (two members, the user one of them)."""
    for channel in list(store.channels.values()):
        if user_id in channel.members and len(channel.members) <= 2:
            if hard:
                store.drop_channel(channel.cid)
            elif channel.deleted_at is None:
                channel.deleted_at = channel.updated_at = now


def delete_users(call: Call) -> dict[str, Any]:
    """``POST /users/delete`` (DeleteUsers): up to 100 ids, answers a task.

    The users are marked deleted at once ("not directly visible in the API"); the
    task reports ``{user_id: {"status": "ok"}}`` once completed.
    """
    user_ids = check_batch(call.body.get("user_ids"), "user_ids", MAX_USERS_PER_DELETE)
    if not user_ids:
        raise input_error("user_ids is a required field")
    mode, messages, conversations = _delete_options(call.body)
    for user_id in user_ids:
        call.store.require_user(check_user_id(user_id, "user_ids[]"))
    for user_id in user_ids:
        if conversations:
            _delete_conversations(call.store, user_id, conversations == "hard", call.now)
        _delete_user(call.store, user_id, call.now, mode, messages)
        emit_user(call, "user.deleted", user_id)
    result = {uid: {"status": "ok"} for uid in user_ids}
    return {"task_id": call.store.add_task(result, call.now, call.clock, call.task_seconds)}


def restore_users(call: Call) -> dict[str, Any]:
    """``POST /users/restore`` (RestoreUsers): undo soft deletes, up to 100 ids.

    Only the user comes back: its memberships (and messages) do not.
    """
    user_ids = check_batch(call.body.get("user_ids"), "user_ids", MAX_USERS_PER_RESTORE)
    if not user_ids:
        raise input_error("user_ids is a required field")
    for user_id in user_ids:
        check_user_id(user_id, "user_ids[]")
        if user_id in call.store.deleted_user_ids:
            raise user_deleted(user_id)  # hard deleted: nothing left to restore
        call.store.require_user(user_id)
    for user_id in user_ids:
        user = call.store.users[user_id]
        user.pop("deleted_at", None)
        user["updated_at"] = call.now
    return {}
