"""The reference app's legacy chat endpoints: the ones the old page polls.

``GET /chat/conversations/{id}/messages`` lists a conversation's messages, oldest first;
``POST`` writes one from the signed-in user through an ORM session with capture
installed, so the outbox mirrors it to Stream in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from stream_outbox.app_hooks.reference import (
    Conversation,
    ConversationParticipant,
    Message,
    Profile,
    User,
)

__all__ = ["MessageOut", "NewMessage", "legacy_router"]


class NewMessage(BaseModel):
    content: str


class MessageOut(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    sender_id: uuid.UUID | None
    sender_name: str | None
    content: str
    created_at: datetime


def legacy_router(
    sessions: Callable[[], Session], current_user_id: Callable[..., Any]
) -> APIRouter:
    """The legacy endpoints under ``/chat``. ``sessions`` makes the app's sessions (capture
    installed); ``current_user_id`` is the dependency giving the signed-in user's id."""
    router = APIRouter(prefix="/chat", tags=["legacy chat"])

    @router.get("/conversations/{conversation_id}/messages")
    def messages(
        conversation_id: uuid.UUID, user_id: uuid.UUID = Depends(current_user_id)
    ) -> list[MessageOut]:
        with sessions() as session:
            _require_participant(session, conversation_id, user_id)
            query = _with_sender(select(Message)).where(Message.conversation_id == conversation_id)
            rows = session.execute(query.order_by(Message.created_at, Message.id))
            return [_answer(message, sender) for message, sender in rows]

    @router.post("/conversations/{conversation_id}/messages")
    def post(
        conversation_id: uuid.UUID,
        body: NewMessage,
        user_id: uuid.UUID = Depends(current_user_id),
    ) -> MessageOut:
        if not body.content.strip():
            raise HTTPException(422, "content is empty")
        with sessions() as session, session.begin():
            _require_participant(session, conversation_id, user_id)
            message = Message(
                conversation_id=conversation_id, sender_id=user_id, content=body.content
            )
            session.add(message)
            session.flush()
            query = _with_sender(select(Message)).where(Message.id == message.id)
            found, sender = session.execute(query).one()
            return _answer(found, sender)

    return router


def _with_sender(query: Select[Any]) -> Select[Any]:
    """``query`` with the name its message shows for the sender: the profile's full name,
    else the email."""
    name = func.coalesce(Profile.full_name, User.email)
    return (
        query.add_columns(name)
        .outerjoin(User, User.id == Message.sender_id)
        .outerjoin(Profile, Profile.user_id == Message.sender_id)
    )


def _require_participant(session: Session, conversation_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """404 for an unknown conversation, 403 for anyone but its participants."""
    if session.get(Conversation, conversation_id) is None:
        raise HTTPException(404, f"no conversation {conversation_id}")
    key = {"conversation_id": conversation_id, "user_id": user_id}
    if session.get(ConversationParticipant, key) is None:
        raise HTTPException(403, "not a participant of this conversation")


def _answer(message: Message, sender: str | None) -> MessageOut:
    return MessageOut(
        id=message.id,
        conversation_id=message.conversation_id,
        sender_id=message.sender_id,
        sender_name=sender,
        content=message.content,
        created_at=message.created_at,
    )
