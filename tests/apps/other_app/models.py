"""The other application's models: its own base, tables and column names.

Nothing here is named like the reference application's (``users``, ``profiles``,
``conversations``...): the binding in :mod:`tests.apps.other_app.chat_binding` says which
attribute plays which part.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Account",
    "Meetup",
    "MeetupInvite",
    "MeetupProposal",
    "OtherBase",
    "Photo",
    "Post",
    "Thread",
    "ThreadMember",
]


class OtherBase(DeclarativeBase):
    """The other application's metadata (none of the reference app's tables)."""


def _when() -> Mapped[datetime | None]:
    return mapped_column(DateTime(timezone=True))


class Account(OtherBase):
    """A user: integer id, email in ``email_address``, display name in ``name``, no profile.

    ``last_seen_at`` is none of Stream's business: changing it writes no outbox row.
    """

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email_address: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    last_seen_at: Mapped[datetime | None] = _when()
    deleted_at: Mapped[datetime | None] = _when()


class Photo(OtherBase):
    """An account's pictures; the newest is its avatar (another table than the account's)."""

    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(Text)


class Meetup(OtherBase):
    """An event: hosted by an account, titled ``name``."""

    __tablename__ = "meetups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))


class Thread(OtherBase):
    """A conversation: UUID id, opened at ``opened_at``, soft-deleted with ``deleted_at``."""

    __tablename__ = "threads"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    opened_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=func.now()
    )
    deleted_at: Mapped[datetime | None] = _when()


class ThreadMember(OtherBase):
    """A participant: leaving a thread sets ``left_at`` (the row stays)."""

    __tablename__ = "thread_members"

    thread_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("threads.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    left_at: Mapped[datetime | None] = _when()


class Post(OtherBase):
    """A message: a text id, ``body`` by ``author_id`` at ``posted_at``, soft-deleted."""

    __tablename__ = "posts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    thread_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("threads.id", ondelete="CASCADE"), index=True
    )
    author_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    body: Mapped[str] = mapped_column(Text)
    posted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=func.now(), index=True
    )
    deleted_at: Mapped[datetime | None] = _when()


class MeetupInvite(OtherBase):
    """An invitation: ``guest_id`` invited to ``meetup_id``, talking in ``thread_id``."""

    __tablename__ = "meetup_invites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    meetup_id: Mapped[int] = mapped_column(ForeignKey("meetups.id", ondelete="CASCADE"))
    guest_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    thread_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("threads.id", ondelete="SET NULL")
    )


class MeetupProposal(OtherBase):
    """A proposal: ``suggested_by`` proposes ``meetup_id``, talking in ``thread_id``."""

    __tablename__ = "meetup_proposals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    meetup_id: Mapped[int] = mapped_column(ForeignKey("meetups.id", ondelete="CASCADE"))
    suggested_by: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    thread_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("threads.id", ondelete="SET NULL")
    )
