"""The demo's people and conversations: two users, a conversation of theirs begun after
go-live (captured: the worker puts it in Stream) and an older one from before it (its
messages in the database only: the page migrates it on demand)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import install
from stream_outbox.app_hooks.reference import (
    Conversation,
    ConversationParticipant,
    Message,
    Profile,
    User,
)

__all__ = ["OLD_MESSAGES", "Cast", "seed"]

OLD_MESSAGES = (
    "Hi Gus, are you coming to the launch?",
    "Yes! Can I bring a friend?",
    "Of course, the more the merrier.",
)


@dataclass(frozen=True)
class Cast:
    """The seeded ids."""

    organizer: uuid.UUID
    guest: uuid.UUID
    conversation: uuid.UUID  # begun after go-live: in Stream once the worker syncs it
    legacy: uuid.UUID  # from before go-live: in the database only


def seed(engine: Engine) -> Cast:
    """Write the demo's story in ``engine``'s database (migrated, with the reference tables).

    The users and the old conversation go through a session without capture, as the
    app's history before stream-outbox did; the new conversation through a captured one.
    """
    with Session(engine) as session, session.begin():
        tag = uuid.uuid4().hex[:8]  # a database seeded before keeps its users
        organizer = User(
            email=f"olga-{tag}@example.com", profile=Profile(full_name="Olga Organizer")
        )
        guest = User(email=f"gus-{tag}@example.com", profile=Profile(full_name="Gus Guest"))
        session.add_all([organizer, guest])
        session.flush()
        start = datetime.now(UTC) - timedelta(days=30)
        legacy = _conversation(session, organizer, guest, created_at=start)
        for n, text in enumerate(OLD_MESSAGES):
            sender = (organizer, guest)[n % 2]
            at = start + timedelta(minutes=n)
            session.add(
                Message(conversation_id=legacy, sender_id=sender.id, content=text, created_at=at)
            )
        ids = organizer.id, guest.id
    captured = sessionmaker(engine, expire_on_commit=False)
    install(captured)
    with captured() as session, session.begin():
        people = [session.get_one(User, uid) for uid in ids]
        conversation = _conversation(session, *people)
    return Cast(organizer=ids[0], guest=ids[1], conversation=conversation, legacy=legacy)


def _conversation(session: Session, *people: User, created_at: datetime | None = None) -> uuid.UUID:
    conversation = Conversation(created_at=created_at or datetime.now(UTC))
    session.add(conversation)
    session.flush()
    session.add_all(
        ConversationParticipant(conversation_id=conversation.id, user_id=p.id) for p in people
    )
    session.flush()
    return conversation.id
