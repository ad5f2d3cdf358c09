"""An optional FastAPI router for the frontend: the user token, the conversation channel
lookup and on-demand migration.

The only module of ``app_hooks`` that imports FastAPI (install it with the
``fastapi`` extra). The application passes its own dependencies: one giving a
database connection, one giving the signed-in user's id.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from sqlalchemy import Connection

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.default_binding import binding_or_reference
from stream_outbox.app_hooks.lookup import channel_for_conversation
from stream_outbox.app_hooks.on_demand import (
    Migration,
    MigrationState,
    migration_status,
    request_migration,
)
from stream_outbox.app_hooks.tokens import user_token

__all__ = ["chat_router"]


def chat_router(
    *,
    connection: Callable[..., Any],
    current_user_id: Callable[..., Any],
    api_key: str,
    api_secret: str,
    app_id: str | None = None,
    base_url: str | None = None,
    binding: Binding | None = None,
    token_ttl: timedelta = timedelta(hours=1),
    prefix: str = "/chat",
) -> APIRouter:
    """``GET {prefix}/token``, ``GET {prefix}/conversations/{id}/channel`` and
    ``POST``/``GET {prefix}/conversations/{id}/migrate``.

    ``connection`` and ``current_user_id`` are FastAPI dependencies of the app
    (a SQLAlchemy ``Connection`` and the user's id). Only participants of a
    conversation may look up its channel or ask for its migration. The ``POST``
    commits its outbox row on that connection.

    ``GET {prefix}/token`` answers ``{token, user_id, api_key, app_id, base_url}``:
    ``base_url`` is the Stream base URL the frontend's client must use (an emulator's,
    say), None for Stream itself.
    """
    bound = binding_or_reference(binding)
    router = APIRouter(prefix=prefix, tags=["chat"])

    @router.get("/token")
    def token(user_id: Any = Depends(current_user_id)) -> dict[str, Any]:
        uid = str(user_id)
        return {
            "token": user_token(api_secret, uid, token_ttl),
            "user_id": uid,
            "api_key": api_key,
            "app_id": app_id,
            "base_url": base_url,
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
            "pending_import": lookup.pending_import,
        }

    @router.post("/conversations/{conversation_id}/migrate")
    def migrate(
        conversation_id: str,
        request: Request,
        response: Response,
        conn: Connection = Depends(connection),
        user_id: Any = Depends(current_user_id),
    ) -> dict[str, Any]:
        _require_participant(conn, bound, conversation_id, user_id)
        found = request_migration(conn, conversation_id, bound)
        conn.commit()
        return _migration_answer(found, conversation_id, request, response)

    @router.get("/conversations/{conversation_id}/migrate")
    def migration(
        conversation_id: str,
        request: Request,
        response: Response,
        conn: Connection = Depends(connection),
        user_id: Any = Depends(current_user_id),
    ) -> dict[str, Any]:
        _require_participant(conn, bound, conversation_id, user_id)
        found = migration_status(conn, conversation_id, bound)
        return _migration_answer(found, conversation_id, request, response)

    return router


def _require_participant(
    conn: Connection, binding: Binding, conversation_id: str, user_id: Any
) -> None:
    """404 for an unknown conversation (or an id not of its column's type), 403 for
    anyone but its participants."""
    try:
        if str(user_id) in reads.members_of(binding, conn, conversation_id):
            return
        exists = conversation_id in reads.desired_channels(binding, conn, [conversation_id])
    except (ValueError, TypeError):
        exists = False
    if not exists:
        raise HTTPException(404, f"no conversation {conversation_id}")
    raise HTTPException(403, "not a participant of this conversation")


def _migration_answer(
    found: Migration | None, conversation_id: str, request: Request, response: Response
) -> dict[str, Any]:
    """200 once synced; 202 with the predicted channel and where to poll while pending;
    409 when nothing was asked (GET); 502 with the error when the migration failed."""
    if found is None:
        raise HTTPException(404, f"no conversation {conversation_id}")
    if found.state is MigrationState.FAILED:
        raise HTTPException(
            502,
            f"migration of conversation {conversation_id} failed: "
            f"{found.error or 'unknown error'}; POST again to retry",
        )
    if found.state is MigrationState.NOT_REQUESTED:
        raise HTTPException(
            409,
            f"conversation {conversation_id} is not synced and no "
            "migration was asked for: POST to ask",
        )
    poll = request.url.path
    if not found.synced:
        response.status_code = 202
        response.headers["Location"] = poll
    return {
        "conversation_id": found.conversation_id,
        "channel_type": found.channel_type,
        "channel_id": found.channel_id,
        "cid": found.cid,
        "synced": found.synced,
        "status": found.state.value,
        "poll": None if found.synced else poll,
    }


def _lookup(conn: Connection, binding: Binding, conversation_id: str) -> Any:
    try:
        lookup = channel_for_conversation(conn, conversation_id, binding)
    except (ValueError, TypeError):
        return None  # not an id of the conversation column's type
    if lookup is None:
        return None
    return lookup, reads.members_of(binding, conn, conversation_id)
