"""A small app shaped unlike the reference, for tests of the binding (tables ``bs_*``).

Integer account ids, UUID threads, text post ids; the display name computed from
``first_name`` and ``last_name`` on the account row (no profile), the avatar from
another table (``bs_photos``), and soft deletes (``deleted_at``, ``left_at``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Text, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from stream_outbox.app_hooks import Binding

__all__ = [
    "BINDING",
    "FIELDS",
    "ROLES",
    "Account",
    "Base",
    "Invite",
    "Meetup",
    "Member",
    "Photo",
    "Pitch",
    "Post",
    "Thread",
    "ada_and_bob_in_a_thread",
]


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "bs_accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    email_address: Mapped[str] = mapped_column(Text)
    first_name: Mapped[str | None] = mapped_column(Text)
    last_name: Mapped[str | None] = mapped_column(Text)
    deleted_at: Mapped[datetime | None]


class Photo(Base):
    __tablename__ = "bs_photos"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("bs_accounts.id"))
    url: Mapped[str] = mapped_column(Text)


class Meetup(Base):
    __tablename__ = "bs_meetups"
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("bs_accounts.id"))
    name: Mapped[str] = mapped_column(Text)


class Thread(Base):
    __tablename__ = "bs_threads"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    opened_at: Mapped[datetime] = mapped_column(server_default=func.now())
    deleted_at: Mapped[datetime | None]


class Member(Base):
    __tablename__ = "bs_members"
    thread_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bs_threads.id"), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("bs_accounts.id"), primary_key=True)
    left_at: Mapped[datetime | None]


class Post(Base):
    __tablename__ = "bs_posts"
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    thread_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bs_threads.id"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("bs_accounts.id"))
    body: Mapped[str] = mapped_column(Text)
    posted_at: Mapped[datetime] = mapped_column(server_default=func.now())
    deleted_at: Mapped[datetime | None]


class Invite(Base):
    __tablename__ = "bs_invites"
    id: Mapped[int] = mapped_column(primary_key=True)
    meetup_id: Mapped[int] = mapped_column(ForeignKey("bs_meetups.id"))
    guest_id: Mapped[int] = mapped_column(ForeignKey("bs_accounts.id"))
    thread_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bs_threads.id"))


class Pitch(Base):
    __tablename__ = "bs_pitches"
    id: Mapped[int] = mapped_column(primary_key=True)
    meetup_id: Mapped[int] = mapped_column(ForeignKey("bs_meetups.id"))
    pitcher_id: Mapped[int] = mapped_column(ForeignKey("bs_accounts.id"))
    thread_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bs_threads.id"))


ROLES: dict[str, Any] = dict(
    user=Account,
    profile=None,
    event=Meetup,
    conversation=Thread,
    participant=Member,
    message=Post,
    invitation=Invite,
    proposal=Pitch,
)
FIELDS = {
    "user": {"email": "email_address"},
    "event": {"organizer_id": "host_id", "title": "name"},
    "conversation": {"created_at": "opened_at"},
    "participant": {"conversation_id": "thread_id", "user_id": "account_id"},
    "message": {
        "id": "key",
        "conversation_id": "thread_id",
        "sender_id": "author_id",
        "content": "body",
        "created_at": "posted_at",
    },
    "invitation": {"event_id": "meetup_id", "user_id": "guest_id", "conversation_id": "thread_id"},
    "proposal": {
        "event_id": "meetup_id",
        "proposer_id": "pitcher_id",
        "conversation_id": "thread_id",
    },
}
BINDING = Binding(
    **ROLES,
    fields=FIELDS,
    soft_delete={
        "user": "deleted_at",
        "conversation": "deleted_at",
        "participant": "left_at",
        "message": "deleted_at",
    },
    user_name=lambda b: func.nullif(func.concat_ws(" ", b.user.first_name, b.user.last_name), ""),
    user_image=lambda b: (
        select(Photo.url)
        .where(Photo.account_id == b.user.id)
        .order_by(Photo.id.desc())
        .limit(1)
        .scalar_subquery()
    ),
    user_sources={Photo: "account_id"},
)


def ada_and_bob_in_a_thread(session: Session) -> tuple[Account, Account, Thread]:
    """Two accounts, ada and bob, members of a new thread (flushed: ids assigned)."""
    ada, bob = Account(email_address="ada@e.com"), Account(email_address="bob@e.com")
    session.add_all([ada, bob])
    session.flush()
    thread = Thread()
    session.add(thread)
    session.flush()
    session.add_all(Member(thread_id=thread.id, account_id=a.id) for a in (ada, bob))
    return ada, bob, thread
