"""An app unlike the reference, as its own module: integer ids, the name on the account row,
no profile, ``threads`` and ``posts`` (tables without a prefix: a database of its own).

Tests that run the installed command line copy this file into an app folder as the app's
``myapp`` module; ``create_tables`` stands for the app's own migrations.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, Text, create_engine, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import NullPool

from stream_outbox import Binding


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    email_address: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)


class Meetup(Base):
    __tablename__ = "meetups"
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    title: Mapped[str] = mapped_column(Text)


class Thread(Base):
    __tablename__ = "threads"
    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[str] = mapped_column(Text)


class Member(Base):
    __tablename__ = "thread_members"
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id"), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(Text)


class Invite(Base):
    __tablename__ = "invites"
    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("meetups.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("threads.id"))


class Proposal(Base):
    __tablename__ = "proposals"
    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("meetups.id"))
    proposer_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("threads.id"))


def make(**fields: Any) -> Binding:
    return Binding(
        user=Account,
        profile=None,
        event=Meetup,
        conversation=Thread,
        participant=Member,
        message=Post,
        invitation=Invite,
        proposal=Proposal,
        fields={
            "user": {"email": "email_address", "full_name": "name", "avatar_url": None},
            "event": {"organizer_id": "host_id"},
            "participant": {"conversation_id": "thread_id", "user_id": "account_id"},
            "message": {
                "conversation_id": "thread_id",
                "sender_id": "author_id",
                "content": "body",
            },
            **fields,
        },
    )


def create_tables(url: str, *, without: str | None = None) -> None:
    """The app's own schema (its migrations), optionally missing one column."""
    ddl = [
        "CREATE TABLE accounts (id serial PRIMARY KEY, email_address text, name text)",
        "CREATE TABLE meetups (id serial PRIMARY KEY, host_id int, title text)",
        "CREATE TABLE threads (id serial PRIMARY KEY, created_at text)",
        "CREATE TABLE thread_members (thread_id int, account_id int)",
        "CREATE TABLE posts (id serial PRIMARY KEY, thread_id int, author_id int, body text,"
        " created_at text)",
        "CREATE TABLE invites (id serial PRIMARY KEY, event_id int, user_id int,"
        " conversation_id int)",
        "CREATE TABLE proposals (id serial PRIMARY KEY, event_id int, proposer_id int,"
        " conversation_id int)",
    ]
    engine = create_engine(
        url.replace("postgres://", "postgresql+psycopg://", 1), poolclass=NullPool
    )
    try:
        with engine.begin() as conn:
            for statement in ddl:
                conn.execute(text(statement))
            if without is not None:
                table, column = without.split(".")
                conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    finally:
        engine.dispose()
