"""An application with text ids and unbounded text columns, bound through a custom Binding.

Real applications do not all use UUIDs: their ids may hold spaces, run past Stream's
64-character channel ids, and their names may be as long as they like. The models
mirror the reference app's attribute names on tables of their own (``sid_*``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from stream_outbox.app_hooks.binding import Binding

__all__ = ["STRING_ID_BINDING", "StringIdBase"]


class StringIdBase(DeclarativeBase):
    """The string-id application's own metadata."""


def _fk(target: str, ondelete: str = "CASCADE") -> Mapped[str]:
    return mapped_column(String(255), ForeignKey(target, ondelete=ondelete), index=True)


class SUser(StringIdBase):
    __tablename__ = "sid_users"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    email: Mapped[str] = mapped_column(Text)


class SProfile(StringIdBase):
    __tablename__ = "sid_profiles"
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("sid_users.id", ondelete="CASCADE"), primary_key=True
    )
    full_name: Mapped[str | None] = mapped_column(Text)
    avatar_url: Mapped[str | None] = mapped_column(Text)


class SEvent(StringIdBase):
    __tablename__ = "sid_events"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    organizer_id: Mapped[str] = _fk("sid_users.id")
    title: Mapped[str] = mapped_column(Text)


class SConversation(StringIdBase):
    __tablename__ = "sid_conversations"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SParticipant(StringIdBase):
    __tablename__ = "sid_participants"
    conversation_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("sid_conversations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("sid_users.id", ondelete="CASCADE"), primary_key=True
    )


class SMessage(StringIdBase):
    __tablename__ = "sid_messages"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    conversation_id: Mapped[str] = _fk("sid_conversations.id")
    sender_id: Mapped[str | None] = _fk("sid_users.id", "SET NULL")
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SInvitation(StringIdBase):
    __tablename__ = "sid_invitations"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_id: Mapped[str] = _fk("sid_events.id")
    user_id: Mapped[str] = _fk("sid_users.id")
    conversation_id: Mapped[str | None] = _fk("sid_conversations.id", "SET NULL")


class SProposal(StringIdBase):
    __tablename__ = "sid_proposals"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_id: Mapped[str] = _fk("sid_events.id")
    proposer_id: Mapped[str] = _fk("sid_users.id")
    conversation_id: Mapped[str | None] = _fk("sid_conversations.id", "SET NULL")


STRING_ID_BINDING = Binding(
    user=SUser,
    profile=SProfile,
    event=SEvent,
    conversation=SConversation,
    participant=SParticipant,
    message=SMessage,
    invitation=SInvitation,
    proposal=SProposal,
)
