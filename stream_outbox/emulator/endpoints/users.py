"""User endpoints: upsert, partial update, query (the lifecycle: ``user_lifecycle.py``)."""

from __future__ import annotations

from functools import partial
from typing import Any

from stream_outbox.emulator.endpoints.call import Call
from stream_outbox.emulator.endpoints.events import emit_user
from stream_outbox.emulator.rules.errors import input_error, user_deleted
from stream_outbox.emulator.rules.filters import (
    MISSING,
    matches,
    named_values,
    normalize_sort,
    sort_items,
)
from stream_outbox.emulator.rules.validation import (
    MAX_USERS_PER_UPSERT,
    QUERY_USERS_DEFAULT_LIMIT,
    QUERY_USERS_MAX_LIMIT,
    as_bool,
    check_batch,
    check_custom_size,
    check_user_id,
    clamp_limit,
    read_offset,
)
from stream_outbox.emulator.state.store import USER_SERVER_FIELDS, Store

# Fields of a user that are Stream's, not custom data, when measuring the 5 KB.
USER_BUILTIN_FIELDS = USER_SERVER_FIELDS | {"id", "role", "teams", "banned"}


def _check_usable(store: Store, user_id: str, user: dict[str, Any]) -> None:
    """A deleted user's id is refused until restored (404 code 16); custom data <= 5 KB."""
    if store.was_deleted(user_id):
        raise user_deleted(user_id)
    check_custom_size(f"user {user_id}", user, USER_BUILTIN_FIELDS)


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
        _check_usable(call.store, payload["id"], payload)
        payloads.append(payload)
    # The stored dicts are encoded straight away on the loop thread; no copy needed.
    stored = {p["id"]: call.store.put_user(p, call.now) for p in payloads}
    for user_id in stored:
        emit_user(call, "user.updated", user_id)
    return {"users": stored}


def update_users_partial(call: Call) -> dict[str, Any]:
    """``PATCH /users`` (UpdateUsersPartial): set/unset fields on existing users."""
    updates = check_batch(call.body.get("users"), "users", MAX_USERS_PER_UPSERT)
    if not updates:
        raise input_error("users is a required field")
    changed: list[dict[str, Any]] = []
    for update in updates:
        if not isinstance(update, dict):
            raise input_error("users entries must be objects")
        user_id = check_user_id(update.get("id"), "users[].id")
        user = call.store.require_live_user(user_id)
        changed.append(_partially_updated(user, update))
        check_custom_size(f"user {user_id}", changed[-1], USER_BUILTIN_FIELDS)
    result: dict[str, Any] = {}
    for user in changed:  # the batch is applied only once every user passed
        user["updated_at"] = call.now
        call.store.users[user["id"]] = user
        result[user["id"]] = dict(user)
        emit_user(call, "user.updated", user["id"])
    return {"users": result}


def _partially_updated(user: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``user`` with ``update``'s ``set`` and ``unset`` applied."""
    updated = dict(user)
    for name, value in (update.get("set") or {}).items():
        if name != "id" and name not in USER_SERVER_FIELDS:
            updated[name] = value
    for name in update.get("unset") or []:
        if name not in ("id", "role") and name not in USER_SERVER_FIELDS:
            updated.pop(name, None)
    return updated


def _user_field(user: dict[str, Any], name: str) -> Any:
    return user.get(name, MISSING)


def _users_named(store: Store, user_ids: list[str]) -> list[dict[str, Any]]:
    return [store.users[uid] for uid in dict.fromkeys(user_ids) if uid in store.users]


def query_users(call: Call) -> dict[str, Any]:
    """``GET /users?payload=`` (QueryUsers)."""
    options = call.payload()
    include_deactivated = as_bool(options.get("include_deactivated_users", False))
    conditions = options.get("filter_conditions") or {}
    store = call.store
    named = named_values(conditions, "id")  # an id filter reads those users only
    candidates = store.users.values() if named is None else _users_named(store, named)
    found = [
        user
        for user in candidates
        if user.get("deleted_at") is None
        and (include_deactivated or user.get("deactivated_at") is None)
        and matches(conditions, partial(_user_field, user))
    ]
    found.sort(key=lambda u: store.user_seq.get(u["id"], 0))
    found = sort_items(found, normalize_sort(options.get("sort")), _user_field)
    offset = read_offset(options.get("offset"))
    limit = clamp_limit(options.get("limit"), QUERY_USERS_DEFAULT_LIMIT, QUERY_USERS_MAX_LIMIT)
    return {"users": [dict(u) for u in found[offset : offset + limit]]}
