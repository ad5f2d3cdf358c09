"""Random application changes through the reference app's ORM, with capture installed.

Shared by the convergence property test (hypothesis draws the operations) and the
chaos run's writer (a seeded ``random.Random`` draws them). An operation is a plain
tuple such as ``("join", 2, 5)``; integer arguments pick among the entities that exist
when it runs (modulo their number; an operation with nothing to pick is skipped), in
creation order, so that one sequence of operations always means the same changes.

Everything goes through ORM sessions of an installed factory, as an application would:
inserts, updates and deletes of objects, and ORM bulk ``update()``/``delete()``.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from stream_outbox.app_hooks.reference import (
    Conversation,
    ConversationParticipant,
    Event,
    EventParticipant,
    EventProposal,
    Message,
    Profile,
    User,
)

__all__ = ["NAMES", "OPERATIONS", "TEXTS", "TITLES", "AppModel", "Op", "random_transaction"]

Op = tuple[Any, ...]

# Display names: plain, emoji, right-to-left, combining marks, markup, quotes, long.
NAMES: tuple[str | None, ...] = (
    None,
    "Ann",
    "Zoë Ångström",
    "🎉 Party 🦄",
    "שלום עולם",
    "مرحبا بالعالم",
    "e\u0301\u0301 combining",
    "<b>bold</b> & 'quotes' \"dq\"",
    "",
    "x" * 200,
)
TITLES = ("Launch", "Launch party 🚀", "حفلة", "Retro; DROP TABLE users; --", "t" * 200)
TEXTS = ("hi", "👋 hello", "שלום", "line\nbreak", "y" * 5000)

# The operation names and how many integer (or flag) arguments each takes.
OPERATIONS: dict[str, int] = {
    "sign_up": 2,  # name, with avatar
    "rename": 2,  # user, name
    "email": 1,  # user
    "avatar": 2,  # user, set or clear
    "drop_profile": 1,  # user
    "delete_user": 1,  # user
    "restore_user": 1,  # deleted user (back from a backup: same id and email)
    "conversation": 3,  # up to three members (negative: none)
    "join": 2,  # conversation, user
    "leave": 2,  # conversation, member
    "everyone_leaves": 1,  # conversation (ORM bulk delete)
    "delete_conversation": 1,  # conversation
    "restore_conversation": 2,  # deleted conversation (back from a backup: same id), member
    "invite": 3,  # organizer, guest, title
    "invite_into": 3,  # event, guest, conversation
    "propose": 3,  # event, proposer, conversation
    "rename_event": 2,  # event, title
    "bulk_rename_events": 1,  # title (ORM bulk update of every event)
    "delete_event": 1,  # event
    "uninvite": 1,  # invitation
    "withdraw": 1,  # proposal
    "message": 3,  # conversation, sender (negative: system), text
    "edit_message": 2,  # message, text
    "delete_message": 1,  # message
}


@dataclass
class AppModel:
    """Applies operations through ``factory`` (a sessionmaker with capture installed)."""

    factory: Callable[[], Session]
    serial: dict[uuid.UUID, int] = field(default_factory=dict)
    conversations: list[uuid.UUID] = field(default_factory=list)  # every one ever created
    deleted_users: list[tuple[uuid.UUID, str]] = field(default_factory=list)  # id, email
    # id, and its messages as a backup holds them (id, sender, text, time)
    deleted_conversations: list[tuple[uuid.UUID, list[tuple[Any, ...]]]] = field(
        default_factory=list
    )
    applied: int = 0
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def transaction(self, ops: Sequence[Op]) -> int:
        """Apply ``ops`` in one transaction; returns how many changed something."""
        changed = 0
        with self.factory() as session, session.begin():
            for op in ops:
                if getattr(self, f"_{op[0]}")(session, *op[1:]) is not False:
                    changed += 1
                session.flush()
        self.applied += changed
        return changed

    # -- picking ------------------------------------------------------------------------

    def _new(self, obj: Any) -> Any:
        if obj.id is None:
            obj.id = uuid.uuid4()
        self.serial[obj.id] = next(self._counter)
        return obj

    def _pick(self, session: Session, column: Any, index: int, *where: Any) -> Any:
        ids = sorted(session.scalars(select(column).where(*where)), key=self._order)
        return ids[index % len(ids)] if ids else None

    def _order(self, value: uuid.UUID) -> int:
        return self.serial.get(value, -1)

    def _user(self, session: Session, index: int) -> uuid.UUID | None:
        return self._pick(session, User.id, index)  # type: ignore[no-any-return]

    def _conv(self, session: Session, index: int) -> uuid.UUID | None:
        return self._pick(session, Conversation.id, index)  # type: ignore[no-any-return]

    def _event(self, session: Session, index: int) -> uuid.UUID | None:
        return self._pick(session, Event.id, index)  # type: ignore[no-any-return]

    # -- users --------------------------------------------------------------------------

    def _sign_up(self, session: Session, name: int, avatar: int) -> uuid.UUID:
        user = self._new(User(email=f"user{len(self.serial)}-{uuid.uuid4().hex[:6]}@example.com"))
        full_name = NAMES[name % len(NAMES)]
        if full_name is not None or avatar:
            image = f"https://example.com/a/{user.id}.png" if avatar else None
            user.profile = Profile(full_name=full_name, avatar_url=image)
        session.add(user)
        return user.id  # type: ignore[no-any-return]

    def _rename(self, session: Session, user: int, name: int) -> bool:
        user_id = self._user(session, user)
        if user_id is None:
            return False
        profile = session.get(Profile, user_id)
        if profile is None:
            session.add(Profile(user_id=user_id, full_name=NAMES[name % len(NAMES)]))
        else:
            profile.full_name = NAMES[name % len(NAMES)]
        return True

    def _email(self, session: Session, user: int) -> bool:
        user_id = self._user(session, user)
        found = session.get(User, user_id) if user_id else None
        if found is None:
            return False
        found.email = f"renamed{next(self._counter)}-{uuid.uuid4().hex[:6]}@example.com"
        return True

    def _avatar(self, session: Session, user: int, set_: int) -> bool:
        user_id = self._user(session, user)
        if user_id is None:
            return False
        image = f"https://example.com/b/{uuid.uuid4().hex[:8]}.png" if set_ else None
        profile = session.get(Profile, user_id)
        if profile is None:
            session.add(Profile(user_id=user_id, avatar_url=image))
        else:
            profile.avatar_url = image
        return True

    def _drop_profile(self, session: Session, user: int) -> bool:
        user_id = self._user(session, user)
        profile = session.get(Profile, user_id) if user_id else None
        if profile is None:
            return False
        session.delete(profile)
        return True

    def _delete_user(self, session: Session, user: int) -> bool:
        user_id = self._user(session, user)
        if user_id is None:
            return False
        user = session.get(User, user_id)
        self.deleted_users.append((user_id, user.email))  # type: ignore[union-attr]
        session.delete(user)
        return True

    def _restore_user(self, session: Session, index: int) -> bool:
        """A deleted user back under its old id (Stream holds it deactivated or deleted)."""
        if not self.deleted_users:
            return False
        user_id, email = self.deleted_users.pop(index % len(self.deleted_users))
        if session.get(User, user_id) is not None:
            return False
        session.add(User(id=user_id, email=email))
        return True

    # -- conversations ------------------------------------------------------------------

    def _conversation(self, session: Session, *members: int) -> uuid.UUID:
        conversation = self._new(Conversation())
        self.conversations.append(conversation.id)
        session.add(conversation)
        session.flush()
        chosen = {self._user(session, m) for m in members if m >= 0} - {None}
        session.add_all(
            ConversationParticipant(conversation_id=conversation.id, user_id=user_id)
            for user_id in sorted(chosen, key=self._order)  # type: ignore[arg-type]
        )
        return conversation.id  # type: ignore[no-any-return]

    def _join(self, session: Session, conversation: int, user: int) -> bool:
        conversation_id, user_id = self._conv(session, conversation), self._user(session, user)
        if conversation_id is None or user_id is None:
            return False
        if self._member(session, conversation_id, user_id) is not None:
            return False
        session.add(ConversationParticipant(conversation_id=conversation_id, user_id=user_id))
        return True

    def _member(self, session: Session, conversation_id: Any, user_id: Any) -> Any:
        return session.scalars(
            select(ConversationParticipant).where(
                ConversationParticipant.conversation_id == conversation_id,
                ConversationParticipant.user_id == user_id,
            )
        ).first()

    def _leave(self, session: Session, conversation: int, member: int) -> bool:
        conversation_id = self._conv(session, conversation)
        if conversation_id is None:
            return False
        part = ConversationParticipant
        user_id = self._pick(session, part.user_id, member, part.conversation_id == conversation_id)
        if user_id is None:
            return False
        session.delete(self._member(session, conversation_id, user_id))
        return True

    def _everyone_leaves(self, session: Session, conversation: int) -> bool:
        conversation_id = self._conv(session, conversation)
        if conversation_id is None:
            return False
        part = ConversationParticipant
        session.execute(delete(part).where(part.conversation_id == conversation_id))
        return True

    def _delete_conversation(self, session: Session, conversation: int) -> bool:
        conversation_id = self._conv(session, conversation)
        if conversation_id is None:
            return False
        columns = (Message.id, Message.sender_id, Message.content, Message.created_at)
        kept = session.execute(select(*columns).where(Message.conversation_id == conversation_id))
        session.delete(session.get(Conversation, conversation_id))
        self.deleted_conversations.append((conversation_id, [tuple(row) for row in kept]))
        return True

    def _restore_conversation(self, session: Session, index: int, member: int) -> bool:
        """A deleted conversation back from a backup: its old id and its messages (their
        senders where they still exist), and a member. Stream deleted its channel, or
        will: the channel's next generation."""
        if not self.deleted_conversations:
            return False
        conversation_id, messages = self.deleted_conversations.pop(
            index % len(self.deleted_conversations)
        )
        if session.get(Conversation, conversation_id) is not None:
            return False
        session.add(Conversation(id=conversation_id))
        session.flush()
        user_id = self._user(session, member)
        if user_id is not None:
            session.add(ConversationParticipant(conversation_id=conversation_id, user_id=user_id))
        for message_id, sender_id, content, created_at in messages:
            sender = sender_id if sender_id and session.get(User, sender_id) else None
            session.add(
                Message(
                    id=message_id,
                    conversation_id=conversation_id,
                    sender_id=sender,
                    content=content,
                    created_at=created_at,
                )
            )
        return True

    # -- events, invitations, proposals -------------------------------------------------

    def _invite(self, session: Session, organizer: int, guest: int, title: int) -> bool:
        organizer_id, guest_id = self._user(session, organizer), self._user(session, guest)
        if organizer_id is None or guest_id is None:
            return False
        event = self._new(Event(organizer_id=organizer_id, title=TITLES[title % len(TITLES)]))
        session.add(event)
        members = sorted({organizer_id, guest_id}, key=self._order)
        conversation_id = self._conversation(session)
        session.add_all(
            ConversationParticipant(conversation_id=conversation_id, user_id=user_id)
            for user_id in members
        )
        session.flush()
        invitation = EventParticipant(
            event_id=event.id, user_id=guest_id, conversation_id=conversation_id
        )
        session.add(self._new(invitation))
        return True

    def _invite_into(self, session: Session, event: int, guest: int, conversation: int) -> bool:
        event_id, guest_id = self._event(session, event), self._user(session, guest)
        conversation_id = self._conv(session, conversation)
        if event_id is None or guest_id is None or conversation_id is None:
            return False
        invitation = EventParticipant(
            event_id=event_id, user_id=guest_id, conversation_id=conversation_id
        )
        session.add(self._new(invitation))
        return True

    def _propose(self, session: Session, event: int, proposer: int, conversation: int) -> bool:
        event_id, proposer_id = self._event(session, event), self._user(session, proposer)
        if event_id is None or proposer_id is None:
            return False
        if conversation < 0:
            conversation_id = self._conversation(session, proposer)
        else:
            conversation_id = self._conv(session, conversation)
        session.add(
            self._new(
                EventProposal(
                    event_id=event_id, proposer_id=proposer_id, conversation_id=conversation_id
                )
            )
        )
        return True

    def _rename_event(self, session: Session, event: int, title: int) -> bool:
        event_id = self._event(session, event)
        if event_id is None:
            return False
        found = session.get(Event, event_id)
        assert found is not None
        found.title = f"{TITLES[title % len(TITLES)]}"[:200]
        return True

    def _bulk_rename_events(self, session: Session, title: int) -> bool:
        session.execute(update(Event).values(title=TITLES[title % len(TITLES)]))
        return True

    def _delete_event(self, session: Session, event: int) -> bool:
        event_id = self._event(session, event)
        if event_id is None:
            return False
        session.delete(session.get(Event, event_id))
        return True

    def _uninvite(self, session: Session, invitation: int) -> bool:
        invitation_id = self._pick(session, EventParticipant.id, invitation)
        if invitation_id is None:
            return False
        session.delete(session.get(EventParticipant, invitation_id))
        return True

    def _withdraw(self, session: Session, proposal: int) -> bool:
        proposal_id = self._pick(session, EventProposal.id, proposal)
        if proposal_id is None:
            return False
        session.delete(session.get(EventProposal, proposal_id))
        return True

    # -- messages -----------------------------------------------------------------------

    def _message(self, session: Session, conversation: int, sender: int, text: int) -> bool:
        conversation_id = self._conv(session, conversation)
        if conversation_id is None:
            return False
        sender_id = None
        if sender >= 0:
            part = ConversationParticipant
            sender_id = self._pick(
                session, part.user_id, sender, part.conversation_id == conversation_id
            )
        session.add(
            self._new(
                Message(
                    conversation_id=conversation_id,
                    sender_id=sender_id,
                    content=TEXTS[text % len(TEXTS)],
                )
            )
        )
        return True

    def _message_at(self, session: Session, index: int) -> Message | None:
        message_id = self._pick(session, Message.id, index)
        return None if message_id is None else session.get(Message, message_id)

    def _edit_message(self, session: Session, message: int, text: int) -> bool:
        found = self._message_at(session, message)
        if found is None:
            return False
        # Differs from every text sent, and stays within Stream's 5,000 characters
        found.content = TEXTS[text % len(TEXTS)][:4999] + "*"
        return True

    def _delete_message(self, session: Session, message: int) -> bool:
        found = self._message_at(session, message)
        if found is None:
            return False
        session.delete(found)
        return True


# How often the chaos writer picks each operation: an app grows more than it shrinks.
WEIGHTS = {
    "sign_up": 6,
    "conversation": 4,
    "join": 4,
    "message": 6,
    "invite": 3,
    "rename": 3,
    "rename_event": 2,
    "delete_user": 1,
    "restore_user": 0.7,
    "delete_conversation": 1,
    "everyone_leaves": 0.3,
    "bulk_rename_events": 0.2,
}


def random_op(rng: random.Random) -> Op:
    """One operation with random arguments (the chaos writer's)."""
    names = list(OPERATIONS)
    (name,) = rng.choices(names, weights=[WEIGHTS.get(n, 1) for n in names])
    args = [rng.randrange(-1, 40) for _ in range(OPERATIONS[name])]
    return (name, *args)


def random_transaction(rng: random.Random) -> list[Op]:
    """One to three operations for one transaction."""
    return [random_op(rng) for _ in range(rng.randint(1, 3))]
