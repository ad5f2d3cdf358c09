"""An optional FastAPI router for the frontend: the user token and conversation channel lookup.

The only module of ``app_hooks`` that imports FastAPI (install it with the
``fastapi`` extra). The application passes its own dependencies: one giving a
database connection, one giving the signed-in user's id.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import Connection

from app_hooks.binding import Binding
from app_hooks.lookup import channel_for_conversation
from app_hooks.tokens import user_token

__all__ = ["chat_router"]


def chat_router(
    *,
    connection: Callable[..., Any],
    current_user_id: Callable[..., Any],
    api_key: str,
    api_secret: str,
    app_id: str | None = None,
    binding: Binding | None = None,
    token_ttl: timedelta = timedelta(hours=1),
    prefix: str = "/chat",
) -> APIRouter:
    """``GET {prefix}/token`` and ``GET {prefix}/conversations/{id}/channel``.

    ``connection`` and ``current_user_id`` are FastAPI dependencies of the app
    (a SQLAlchemy ``Connection`` and the user's id). Only participants of a
    conversation may look up its channel.
    """
    if binding is None:
        from app_hooks.reference import REFERENCE_BINDING

        binding = REFERENCE_BINDING
    bound = binding
    router = APIRouter(prefix=prefix, tags=["chat"])

    @router.get("/token")
    def token(user_id: Any = Depends(current_user_id)) -> dict[str, Any]:
        uid = str(user_id)
        return {
            "token": user_token(api_secret, uid, token_ttl),
            "user_id": uid,
            "api_key": api_key,
            "app_id": app_id,
        }

    @router.get("/conversations/{conversation_id}/channel")
    def channel(
        conversation_id: str,
        conn: Connection = Depends(connection),
        user_id: Any = Depends(current_user_id),
    ) -> dict[str, Any]:
        found = _lookup(conn, bound, conversation_id)
        if found is None:
            raise HTTPException(404, f"no conversation {conversation_id}")
        if str(user_id) not in found[1]:
            raise HTTPException(403, "not a participant of this conversation")
        lookup = found[0]
        return {
            "conversation_id": lookup.conversation_id,
            "channel_type": lookup.channel_type,
            "channel_id": lookup.channel_id,
            "cid": lookup.cid,
            "synced": lookup.synced,
        }

    return router


def _lookup(conn: Connection, binding: Binding, conversation_id: str) -> Any:
    try:
        lookup = channel_for_conversation(conn, conversation_id, binding)
    except (ValueError, TypeError):
        return None  # not an id of the conversation column's type
    if lookup is None:
        return None
    return lookup, binding.members_of(conn, conversation_id)
