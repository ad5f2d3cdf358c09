"""What ``GET /connect`` does once the WebSocket is open: who connects, the user upserted
from ``json.user_details`` as ``connectUser`` does, and the first ``health.check``.

The client's query (``_buildUrl`` in stream-chat-js's ``src/connection.ts``): ``json``
(``{"user_id", "user_details", "device", "client_request_id"}``), ``api_key``,
``authorization`` (the user token) and ``stream-auth-type``. The first event carries
``connection_id`` and ``me``, the own user the client keeps as ``client.user``
(it reads ``channel_mutes``, ``mutes``, ``blocked_user_ids``, ``total_unread_count``...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from stream_outbox.emulator.rules.errors import (
    AUTHENTICATION_ERROR,
    INPUT_ERROR,
    MORE_INFO,
    StreamError,
    user_deactivated,
    user_deleted,
)
from stream_outbox.emulator.rules.validation import check_user_id
from stream_outbox.emulator.state.store import USER_SERVER_FIELDS, Store

# What a user may not set of itself on connect (Stream: the role is the server's to give).
_NOT_FROM_CLIENT = USER_SERVER_FIELDS | {"id", "role", "banned", "teams"}


def connect_payload(query: Mapping[str, str]) -> dict[str, Any]:
    """The ``json`` query parameter, decoded; 400 (code 4) when it is not a JSON object."""
    raw = query.get("json")
    if not raw:
        raise StreamError(400, INPUT_ERROR, "json query parameter is required", prefixed=False)
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise StreamError(400, INPUT_ERROR, "json query parameter is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise StreamError(400, INPUT_ERROR, "json query parameter must be an object")
    return payload


def connecting_user(payload: dict[str, Any], actor: str | None) -> str:
    """The user connecting: ``json.user_id``, which must be the token's user."""
    details = payload.get("user_details")
    named = payload.get("user_id") or (details.get("id") if isinstance(details, dict) else None)
    user_id = check_user_id(named or actor, "user_id")
    if actor is not None and actor != user_id:
        raise StreamError(
            401,
            AUTHENTICATION_ERROR,
            f"JWTAuth error: token is for user {actor}, not for {user_id}",
        )
    return user_id


def upsert_on_connect(store: Store, user_id: str, details: Any, now: str) -> dict[str, Any]:
    """Create the user, or set the fields ``user_details`` gives (not its role)."""
    if store.was_deleted(user_id):
        raise user_deleted(user_id)
    given = details if isinstance(details, dict) else {}
    fields = {k: v for k, v in given.items() if k not in _NOT_FROM_CLIENT}
    user = store.users.get(user_id)
    if user is None:
        user = store.put_user({"id": user_id, **fields}, now)
    else:
        if user.get("deactivated_at"):
            raise user_deactivated(user_id)
        if any(user.get(k) != v for k, v in fields.items()):
            user.update(fields)
            user["updated_at"] = now
    return user


def own_user(store: Store, user_id: str) -> dict[str, Any]:
    """``me``: the user with the own-user fields the client reads."""
    total, channels = store.unread_totals(user_id)
    me = store.user_view(user_id)
    me.update(
        {
            "channel_mutes": [],
            "mutes": [],
            "devices": [],
            "blocked_user_ids": [],
            "invisible": False,
            "unread_count": total,
            "total_unread_count": total,
            "unread_channels": channels,
            "unread_threads": 0,
        }
    )
    return me


def connection_error(err: StreamError) -> dict[str, Any]:
    """The event a refused connection gets before its socket is closed: an ``error``
    object as stream-chat-js reads it (``code``, ``StatusCode``, ``message``)."""
    return {
        "error": {
            "code": err.code,
            "message": err.detail,
            "StatusCode": err.status,
            "duration": "",
            "more_info": MORE_INFO,
            "details": [],
        }
    }
