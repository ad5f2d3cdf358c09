"""A scene of the reference app shared by tests: an organizer invites a guest."""

from __future__ import annotations

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

__all__ = ["invite"]


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
