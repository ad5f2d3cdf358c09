"""The demo's story: what people do in the reference app, chapter by chapter.

Each chapter is one transaction of the app, made through sessions with capture
installed; :mod:`stream_outbox.worker.demo.run` drains the outbox after each. Together they cover
what the product keeps in step: users with and without profiles, an event with
invitations and a proposal, a direct two-person conversation and a group, messages
(one from the system), renames, a participant leaving and a conversation deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session

from stream_outbox.app_hooks.reference import Conversation as Conv
from stream_outbox.app_hooks.reference import ConversationParticipant as Participant
from stream_outbox.app_hooks.reference import (
    Event,
    EventParticipant,
    EventProposal,
    Message,
    Profile,
    User,
)

__all__ = ["CONVERSATIONS", "PEOPLE", "STORY", "Cast", "Chapter"]

Cast = dict[str, uuid.UUID]  # the story's people, event and conversations by nickname
Chapter = Callable[[Session, Cast], None]
PEOPLE = ("olga", "gus", "pia", "dan", "mia")
CONVERSATIONS = ("with_gus", "with_pia", "proposal", "dm", "group")


def _conversation(session: Session, *user_ids: uuid.UUID) -> uuid.UUID:
    conversation = Conv()
    session.add(conversation)
    session.flush()
    session.add_all(Participant(conversation_id=conversation.id, user_id=u) for u in user_ids)
    return conversation.id


def _sign_up(session: Session, cast: Cast) -> None:
    people = [
        ("olga", "Olga Organizer", "olga.png"),
        ("gus", None, None),
        ("pia", "Pia Planner", "pia.png"),
        ("dan", "Dan Delgado", None),
        ("mia", "Mia Moreau", "mia.png"),
    ]
    for key, name, image in people:
        user = User(email=f"{key}@example.com")
        if name:
            avatar = f"https://example.com/avatars/{image}" if image else None
            user.profile = Profile(full_name=name, avatar_url=avatar)
        session.add(user)
        session.flush()
        cast[key] = user.id


def _invite(session: Session, cast: Cast) -> None:
    event = Event(organizer_id=cast["olga"], title="Launch party")
    session.add(event)
    session.flush()
    cast["event"] = event.id
    for guest in ("gus", "pia"):
        conversation = _conversation(session, cast["olga"], cast[guest])
        session.add(
            EventParticipant(event_id=event.id, user_id=cast[guest], conversation_id=conversation)
        )
        cast[f"with_{guest}"] = conversation


def _propose(session: Session, cast: Cast) -> None:
    cast["proposal"] = _conversation(session, cast["dan"], cast["olga"])
    session.add(
        EventProposal(
            event_id=cast["event"], proposer_id=cast["dan"], conversation_id=cast["proposal"]
        )
    )


def _open_chats(session: Session, cast: Cast) -> None:
    cast["dm"] = _conversation(session, cast["gus"], cast["mia"])
    cast["group"] = _conversation(session, cast["pia"], cast["dan"], cast["mia"])


def _talk(session: Session, cast: Cast) -> None:
    lines = [
        ("with_gus", "olga", "Welcome aboard, Gus!"),
        ("with_gus", None, "Gus accepted the invitation."),
        ("with_pia", "olga", "Can you make it, Pia?"),
        ("proposal", "dan", "A lightning talk on outboxes?"),
        ("dm", "gus", "See you at the launch?"),
        ("dm", "mia", "Wouldn't miss it."),
        ("group", "pia", "Who brings the cake?"),
    ]
    for where, who, content in lines:
        sender = cast[who] if who else None
        session.add(Message(conversation_id=cast[where], sender_id=sender, content=content))


def _rename(session: Session, cast: Cast) -> None:
    session.add(Profile(user_id=cast["gus"], full_name="Gus Garcia"))
    olga, event = session.get(Profile, cast["olga"]), session.get(Event, cast["event"])
    assert olga is not None and event is not None
    olga.avatar_url = "https://example.com/avatars/olga-2.png"
    event.title = "Launch party (moved to Friday)"


def _leave(session: Session, cast: Cast) -> None:
    session.delete(session.get(Participant, (cast["group"], cast["mia"])))


def _delete(session: Session, cast: Cast) -> None:
    session.delete(session.get(Conv, cast["with_pia"]))


STORY: list[tuple[str, Chapter]] = [
    ("five people sign up, four with a profile", _sign_up),
    ("Olga creates 'Launch party' and invites Gus and Pia", _invite),
    ("Dan proposes a talk for the event", _propose),
    ("Gus and Mia talk directly; Pia, Dan and Mia open a group", _open_chats),
    ("seven messages, one from the system", _talk),
    ("Gus names himself, Olga changes her picture, the event moves", _rename),
    ("Mia leaves the group", _leave),
    ("Pia declines: her conversation with Olga is deleted", _delete),
]
