"""The binding: how an application's models map to Stream users, channels and messages.

A real application hands its own classes to :class:`Binding`; they must expose
the attribute names of the reference models (a column may have another name in
the database: ``full_name = mapped_column("name")``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, literal, or_, select, tuple_, union

from app_hooks.changes import EVENT_KIND, Rule
from app_hooks.channel_ids import CHANNEL_TYPE, ChannelFacts
from app_hooks.outbox import TargetKind

__all__ = [
    "Binding",
    "DesiredChannel",
    "DesiredMessage",
    "DesiredUser",
    "stream_message_id",
]


@dataclass(frozen=True)
class DesiredUser:
    """What Stream should hold for one user."""

    id: str
    name: str
    image: str | None

    def as_stream(self) -> dict[str, Any]:
        """The user object sent to Stream's upsert."""
        user: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.image:
            user["image"] = self.image
        return user


@dataclass(frozen=True)
class DesiredChannel:
    """What Stream should hold for one conversation's channel (its id comes from the map)."""

    conversation_id: str
    facts: ChannelFacts
    members: tuple[str, ...]
    data: dict[str, Any]
    created_by: str | None
    channel_type: str = CHANNEL_TYPE


@dataclass(frozen=True)
class DesiredMessage:
    """A message of the application as Stream should hold it (id derived from the database's)."""

    id: str
    conversation_id: str
    sender_id: str | None
    text: str
    created_at: datetime | None

    @property
    def stream_id(self) -> str:
        """The deterministic Stream message id: re-runs and replays never duplicate."""
        return stream_message_id(self.id)


def stream_message_id(message_id: str) -> str:
    """The Stream id of the application's message ``message_id``."""
    return f"msg-{message_id}"


@dataclass(frozen=True)
class Binding:
    """The application's model classes, by role."""

    user: type[Any]
    profile: type[Any]
    event: type[Any]
    conversation: type[Any]
    participant: type[Any]
    message: type[Any]
    invitation: type[Any]
    proposal: type[Any]

    @cached_property
    def rules(self) -> dict[type[Any], Rule]:
        """Which changes of which model matter to Stream, and to which target."""
        conversation = TargetKind.CONVERSATION.value
        return {
            self.user: Rule(TargetKind.USER.value, "id", frozenset({"id", "email"})),
            self.profile: Rule(
                TargetKind.USER.value, "user_id", frozenset({"user_id", "full_name", "avatar_url"})
            ),
            self.conversation: Rule(conversation, "id", frozenset({"id"})),
            self.participant: Rule(
                conversation, "conversation_id", frozenset({"conversation_id", "user_id"})
            ),
            self.invitation: Rule(
                conversation, "conversation_id", frozenset({"conversation_id", "event_id"})
            ),
            self.proposal: Rule(
                conversation,
                "conversation_id",
                frozenset({"conversation_id", "event_id", "proposer_id"}),
            ),
            self.event: Rule(EVENT_KIND, "id", frozenset({"id", "title", "organizer_id"})),
            self.message: Rule(
                TargetKind.MESSAGE.value,
                "id",
                frozenset({"id", "conversation_id", "sender_id", "content"}),
                payload=("conversation_id",),
            ),
        }

    def rule_for(self, cls: type[Any]) -> Rule | None:
        """The rule of a mapped class or of its nearest bound base class."""
        cache = self._rule_cache
        if cls not in cache:
            cache[cls] = next(
                (self.rules[klass] for klass in cls.__mro__ if klass in self.rules), None
            )
        return cache[cls]

    @cached_property
    def _rule_cache(self) -> dict[type[Any], Rule | None]:
        return {}

    # -- queries the capture and the worker share ------------------------------------

    def conversations_of_users(self, conn: Connection, user_ids: Collection[str]) -> set[str]:
        """Conversations the given users take part in."""
        part = self.participant
        query = select(part.conversation_id).where(
            part.user_id.in_(self._ids(part.user_id, user_ids))
        )
        return {str(value) for value in conn.scalars(query)}

    def conversations_of_deleted_users(
        self, conn: Connection, user_ids: Collection[str]
    ) -> set[str]:
        """Conversations whose channel the users' deletion changes.

        Those they take part in, and those of what the deletion cascades to in the
        database: their invitations and proposals, and the invitations and proposals
        of the events they organize (the channel's name and event go with them).
        """
        part, inv, prop, event = self.participant, self.invitation, self.proposal, self.event
        ids = self._ids(part.user_id, user_ids)
        organized = select(event.id).where(event.organizer_id.in_(ids))
        query = union(
            select(part.conversation_id).where(part.user_id.in_(ids)),
            select(inv.conversation_id).where(
                or_(inv.user_id.in_(ids), inv.event_id.in_(organized))
            ),
            select(prop.conversation_id).where(
                or_(prop.proposer_id.in_(ids), prop.event_id.in_(organized))
            ),
        )
        return {str(value) for value in conn.scalars(query) if value is not None}

    def conversations_of_events(self, conn: Connection, event_ids: Collection[str]) -> set[str]:
        """Conversations opened by the given events' invitations and proposals."""
        inv, prop = self.invitation, self.proposal
        query = union(
            select(inv.conversation_id).where(inv.event_id.in_(self._ids(inv.event_id, event_ids))),
            select(prop.conversation_id).where(
                prop.event_id.in_(self._ids(prop.event_id, event_ids))
            ),
        )
        return {str(value) for value in conn.scalars(query) if value is not None}

    def ids_after(
        self,
        conn: Connection,
        kind: str,
        after: str | None,
        limit: int,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        only: Collection[str] | None = None,
    ) -> list[str]:
        """Up to ``limit`` ids of users or conversations after ``after``, in id order.

        Keyset pages for resync and backfill: a crash resumes from the last id done.
        Conversations can be narrowed to a creation-time range or to given ids.
        """
        model = self.user if kind == "user" else self.conversation
        query = select(model.id).order_by(model.id).limit(limit)
        if after is not None:
            query = query.where(model.id > self._ids(model.id, [after])[0])
        if since is not None:
            query = query.where(model.created_at >= since)
        if until is not None:
            query = query.where(model.created_at <= until)
        if only is not None:
            query = query.where(model.id.in_(self._ids(model.id, only)))
        return [str(value) for value in conn.scalars(query)]

    def desired_users(self, conn: Connection, user_ids: Collection[str]) -> dict[str, DesiredUser]:
        """Stream users for the given ids; ids with no user are absent."""
        user, profile = self.user, self.profile
        query = (
            select(user.id, user.email, profile.full_name, profile.avatar_url)
            .outerjoin(profile, profile.user_id == user.id)
            .where(user.id.in_(self._row_ids(user.id, user_ids)))
        )
        return {
            str(uid): DesiredUser(str(uid), full_name or email, avatar_url)
            for uid, email, full_name, avatar_url in conn.execute(query)
        }

    def desired_channels(
        self, conn: Connection, conversation_ids: Collection[str], legacy: bool = False
    ) -> dict[str, DesiredChannel]:
        """Desired channels for the given conversations; ids with no conversation are absent."""
        conv = self.conversation
        ids = self._row_ids(conv.id, conversation_ids)
        found = {str(value) for value in conn.scalars(select(conv.id).where(conv.id.in_(ids)))}
        members = self._members(conn, ids)
        inv, prop, event = self.invitation, self.proposal, self.event
        invitations = {
            str(cid): (str(iid), str(org), title, str(eid))
            for cid, iid, org, title, eid in conn.execute(
                select(inv.conversation_id, inv.id, event.organizer_id, event.title, event.id)
                .join(event, event.id == inv.event_id)
                .where(inv.conversation_id.in_(ids))
                .order_by(inv.id.desc())
            )
        }
        proposals = {
            str(cid): (str(pid), str(proposer), title, str(eid))
            for cid, pid, proposer, title, eid in conn.execute(
                select(prop.conversation_id, prop.id, prop.proposer_id, event.title, event.id)
                .join(event, event.id == prop.event_id)
                .where(prop.conversation_id.in_(ids))
                .order_by(prop.id.desc())
            )
        }
        return {
            cid: _desired_channel(
                cid, members.get(cid, ()), invitations.get(cid), proposals.get(cid), legacy
            )
            for cid in found
        }

    def desired_messages(
        self, conn: Connection, message_ids: Collection[str]
    ) -> dict[str, DesiredMessage]:
        """The given messages as Stream should hold them; ids with no message are absent."""
        msg = self.message
        query = select(
            msg.id, msg.conversation_id, msg.sender_id, msg.content, msg.created_at
        ).where(msg.id.in_(self._row_ids(msg.id, message_ids)))
        return {
            str(mid): DesiredMessage(
                str(mid), str(cid), None if sender is None else str(sender), content or "", created
            )
            for mid, cid, sender, content, created in conn.execute(query)
        }

    def messages_after(
        self,
        conn: Connection,
        conversation_id: str,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[DesiredMessage]:
        """A conversation's messages after ``(created_at, id)``, oldest first (history import)."""
        msg = self.message
        cid = self._ids(msg.conversation_id, [conversation_id])[0]
        query = (
            select(msg.id, msg.conversation_id, msg.sender_id, msg.content, msg.created_at)
            .where(msg.conversation_id == cid)
            .order_by(msg.created_at, msg.id)
            .limit(limit)
        )
        if after is not None:
            moment, message_id = after
            mid = self._ids(msg.id, [message_id])[0]
            query = query.where(
                tuple_(msg.created_at, msg.id) > tuple_(literal(moment), literal(mid))
            )
        return [
            DesiredMessage(
                str(mid), str(cid_), None if sender is None else str(sender), content or "", created
            )
            for mid, cid_, sender, content, created in conn.execute(query)
        ]

    def undated_message(self, conn: Connection, conversation_id: str) -> str | None:
        """A message of the conversation without ``created_at``, if it has one (the history
        import orders by it and cannot place such a message)."""
        msg = self.message
        cid = self._ids(msg.conversation_id, [conversation_id])[0]
        query = (
            select(msg.id)
            .where(msg.conversation_id == cid, msg.created_at.is_(None))
            .order_by(msg.id)
            .limit(1)
        )
        found = conn.execute(query).scalar()
        return None if found is None else str(found)

    def _members(self, conn: Connection, ids: list[Any]) -> dict[str, tuple[str, ...]]:
        part = self.participant
        members: dict[str, list[str]] = {}
        query = select(part.conversation_id, part.user_id).where(part.conversation_id.in_(ids))
        for cid, uid in conn.execute(query):
            members.setdefault(str(cid), []).append(str(uid))
        return {cid: tuple(sorted(uids)) for cid, uids in members.items()}

    @staticmethod
    def _ids(column: Any, values: Iterable[str]) -> list[Any]:
        """Turn target ids (strings) back into the column's Python type."""
        python_type = column.type.python_type
        return [python_type(value) for value in values]

    @staticmethod
    def _row_ids(column: Any, values: Iterable[str]) -> list[Any]:
        """Like :meth:`_ids`, leaving out values no row can have (``"x"`` for a UUID column):
        a target id edited by hand names nothing, rather than failing the whole batch."""
        python_type = column.type.python_type
        ids = []
        for value in values:
            try:
                ids.append(python_type(value))
            except (TypeError, ValueError):
                continue
        return ids


def _desired_channel(
    cid: str,
    members: tuple[str, ...],
    invitation: tuple[str, str, str, str] | None,
    proposal: tuple[str, str, str, str] | None,
    legacy: bool,
) -> DesiredChannel:
    data: dict[str, Any] = {"conversation_id": cid}
    created_by = members[0] if members else None
    origin = invitation or proposal
    if origin is not None:
        _, creator, title, event_id = origin
        data.update(name=title, event_id=event_id)
        created_by = creator
    facts = ChannelFacts(
        conversation_id=cid,
        invitation_id=invitation[0] if invitation else None,
        proposal_id=proposal[0] if proposal else None,
        member_ids=members,
        legacy=legacy,
    )
    return DesiredChannel(cid, facts, members, data, created_by)
