"""Scenes of the reference app shared by tests and benchmarks: an organizer invites a guest."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from stream_outbox.app_hooks.reference import (
    Conversation,
    ConversationParticipant,
    Event,
    EventParticipant,
    Profile,
    User,
)

__all__ = ["group", "invite", "organizer_and_event"]


def group(session: Session, count: int, tag: str) -> tuple[list[User], Conversation]:
    """``count`` new users (``{tag}{n}@example.com``) and a conversation of them all."""
    people = [User(email=f"{tag}{n}@example.com") for n in range(count)]
    conversation = Conversation()
    session.add_all([*people, conversation])
    session.flush()
    session.add_all(
        ConversationParticipant(conversation_id=conversation.id, user_id=p.id) for p in people
    )
    return people, conversation


def invite(session: Session, title: str = "Launch") -> dict[str, Any]:
    """An organizer with a profile, a guest, an event, their conversation and the invitation."""
    organizer = User(email="org@example.com", profile=Profile(full_name="Olga Organizer"))
    guest = User(email="guest@example.com")
    session.add_all([organizer, guest])
    session.flush()
    event = Event(organizer_id=organizer.id, title=title)
    conversation = Conversation()
    session.add_all([event, conversation])
    session.flush()
    session.add_all(
        [
            ConversationParticipant(conversation_id=conversation.id, user_id=organizer.id),
            ConversationParticipant(conversation_id=conversation.id, user_id=guest.id),
        ]
    )
    invitation = EventParticipant(
        event_id=event.id, user_id=guest.id, conversation_id=conversation.id
    )
    session.add(invitation)
    session.flush()
    return {
        "organizer": organizer,
        "guest": guest,
        "event": event,
        "conversation": conversation,
        "invitation": invitation,
    }


def organizer_and_event(
    new_session: Callable[[], Session], title: str
) -> tuple[uuid.UUID, uuid.UUID]:
    """A new organizer (an email of its own) and its event, through ``new_session``."""
    with new_session() as session:
        organizer = User(email=f"org-{uuid.uuid4().hex}@example.com")
        session.add(organizer)
        session.flush()
        event = Event(organizer_id=organizer.id, title=title)
        session.add(event)
        session.commit()
        return organizer.id, event.id
