"""User endpoints: upsert, partial update, query, (de|re)activate, delete, restore."""

from __future__ import annotations

from functools import partial
from typing import Any

from stream_emulator.call import Call
from stream_emulator.errors import input_error
from stream_emulator.filters import MISSING, matches, normalize_sort, sort_items
from stream_emulator.store import USER_SERVER_FIELDS, Store
from stream_emulator.validation import (
    MAX_USERS_PER_DELETE,
    MAX_USERS_PER_UPSERT,
    QUERY_USERS_DEFAULT_LIMIT,
    QUERY_USERS_MAX_LIMIT,
    as_bool,
    check_batch,
    check_user_id,
    clamp_limit,
    read_offset,
)


def update_users(call: Call) -> dict[str, Any]:
    """``POST /users`` (UpdateUsers): upsert a batch of up to 100 users."""
    users = call.body.get("users")
    if not isinstance(users, dict) or not users:
        raise input_error("users is a required field")
    if len(users) > MAX_USERS_PER_UPSERT:
        raise input_error(
            f"users can contain at most {MAX_USERS_PER_UPSERT} items, got {len(users)}"
        )
    payloads: list[dict[str, Any]] = []
    for key, user in users.items():
        if not isinstance(user, dict):
            raise input_error(f"users[{key}] must be an object")
        payload = dict(user)
        payload.setdefault("id", key)
        check_user_id(payload["id"], f"users[{key}].id")
        payloads.append(payload)
    # The stored dicts are encoded straight away on the loop thread; no copy needed.
    return {"users": {p["id"]: call.store.put_user(p, call.now) for p in payloads}}


def update_users_partial(call: Call) -> dict[str, Any]:
    """``PATCH /users`` (UpdateUsersPartial): set/unset fields on existing users."""
    updates = check_batch(call.body.get("users"), "users", MAX_USERS_PER_UPSERT)
    if not updates:
        raise input_error("users is a required field")
    for update in updates:
        if not isinstance(update, dict):
            raise input_error("users entries must be objects")
        call.store.require_user(check_user_id(update.get("id"), "users[].id"))
    result: dict[str, Any] = {}
    for update in updates:
        user = call.store.users[update["id"]]
        to_set = update.get("set") or {}
        for name, value in to_set.items():
            if name != "id" and name not in USER_SERVER_FIELDS:
                user[name] = value
        for name in update.get("unset") or []:
            if name not in ("id", "role") and name not in USER_SERVER_FIELDS:
                user.pop(name, None)
        user["updated_at"] = call.now
        result[user["id"]] = dict(user)
    return {"users": result}


def _user_field(user: dict[str, Any], name: str) -> Any:
    return user.get(name, MISSING)


def query_users(call: Call) -> dict[str, Any]:
    """``GET /users?payload=`` (QueryUsers)."""
    options = call.payload()
    include_deactivated = as_bool(options.get("include_deactivated_users", False))
    conditions = options.get("filter_conditions") or {}
    store = call.store
    found = [
        user
        for user in store.users.values()
        if user.get("deleted_at") is None
        and (include_deactivated or user.get("deactivated_at") is None)
        and matches(conditions, partial(_user_field, user))
    ]
    found.sort(key=lambda u: store.user_seq.get(u["id"], 0))
    found = sort_items(found, normalize_sort(options.get("sort")), _user_field)
    offset = read_offset(options.get("offset"))
    limit = clamp_limit(options.get("limit"), QUERY_USERS_DEFAULT_LIMIT, QUERY_USERS_MAX_LIMIT)
    return {"users": [dict(u) for u in found[offset : offset + limit]]}


def _deactivate(store: Store, user_id: str, now: str, mark_messages_deleted: bool) -> None:
    user = store.require_user(user_id)
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


def deactivate_user(call: Call) -> dict[str, Any]:
    """``POST /users/{id}/deactivate`` (DeactivateUser)."""
    user_id = check_user_id(call.params[0], "user_id")
    _deactivate(call.store, user_id, call.now, as_bool(call.body.get("mark_messages_deleted")))
    return {"user": dict(call.store.users[user_id])}


def deactivate_users(call: Call) -> dict[str, Any]:
    """``POST /users/deactivate`` (DeactivateUsers): returns a completed task."""
    user_ids = check_batch(call.body.get("user_ids"), "user_ids", MAX_USERS_PER_DELETE)
    if not user_ids:
        raise input_error("user_ids is a required field")
    for user_id in user_ids:
        call.store.require_user(check_user_id(user_id, "user_ids[]"))
    mark = as_bool(call.body.get("mark_messages_deleted"))
    for user_id in user_ids:
        _deactivate(call.store, user_id, call.now, mark)
    task_id = call.store.add_task({"deactivated_user_ids": list(user_ids)}, call.now)
    return {"task_id": task_id}


def reactivate_user(call: Call) -> dict[str, Any]:
    """``POST /users/{id}/reactivate`` (ReactivateUser)."""
    user_id = check_user_id(call.params[0], "user_id")
    user = call.store.require_user(user_id)
    user.pop("deactivated_at", None)
    if call.body.get("name"):
        user["name"] = call.body["name"]
    user["updated_at"] = call.now
    return {"user": dict(user)}


def _delete_user(store: Store, user_id: str, now: str, hard: bool, messages: bool) -> None:
    if messages or hard:
        _mark_messages_deleted(store, user_id, now)
    if hard:
        store.users.pop(user_id, None)
        store.user_seq.pop(user_id, None)
        for channel in store.channels.values():
            channel.members.pop(user_id, None)
        return
    user = store.users[user_id]
    user["deleted_at"] = now
    user["updated_at"] = now


def delete_user(call: Call) -> dict[str, Any]:
    """``DELETE /users/{id}`` (DeleteUser): soft by default, ``hard_delete=true`` for hard."""
    user_id = check_user_id(call.params[0], "user_id")
    user = dict(call.store.require_user(user_id))
    hard = as_bool(call.query.get("hard_delete", False))
    marks = as_bool(call.query.get("mark_messages_deleted", False))
    _delete_user(call.store, user_id, call.now, hard, marks)
    if hard:
        user["deleted_at"] = call.now
        return {"user": user}
    return {"user": dict(call.store.users[user_id])}


def delete_users(call: Call) -> dict[str, Any]:
    """``POST /users/delete`` (DeleteUsers): returns a completed task."""
    user_ids = check_batch(call.body.get("user_ids"), "user_ids", MAX_USERS_PER_DELETE)
    if not user_ids:
        raise input_error("user_ids is a required field")
    mode = call.body.get("user") or "soft"
    if mode not in ("soft", "pruning", "hard"):
        raise input_error('user must be one of "soft", "pruning" or "hard"')
    if mode == "hard" and call.body.get("messages") != "hard":
        raise input_error("hard deleting users requires messages to be hard deleted as well")
    for user_id in user_ids:
        call.store.require_user(check_user_id(user_id, "user_ids[]"))
    for user_id in user_ids:
        _delete_user(call.store, user_id, call.now, mode == "hard", bool(call.body.get("messages")))
    task_id = call.store.add_task({uid: {"status": "ok"} for uid in user_ids}, call.now)
    return {"task_id": task_id}


def restore_users(call: Call) -> dict[str, Any]:
    """``POST /users/restore`` (RestoreUsers): undo a soft delete."""
    user_ids = check_batch(call.body.get("user_ids"), "user_ids", MAX_USERS_PER_DELETE)
    for user_id in user_ids:
        user = call.store.require_user(check_user_id(user_id, "user_ids[]"))
        user.pop("deleted_at", None)
        user["updated_at"] = call.now
    return {}
