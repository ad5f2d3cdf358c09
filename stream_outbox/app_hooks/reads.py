"""The binding's reads of the application's database: desired state and related ids.

Every column comes through :meth:`BoundModels.column` (the app's own attribute names),
and every role with a soft-delete mark reads its live rows only.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, func, literal, null, or_, select, tuple_, union

from stream_outbox.app_hooks.desired import (
    DesiredChannel,
    DesiredMessage,
    DesiredUser,
    desired_channel,
)
from stream_outbox.app_hooks.fields import BoundModels

__all__ = [
    "conversations_of_deleted_users",
    "conversations_of_events",
    "conversations_of_users",
    "count",
    "desired_channels",
    "desired_messages",
    "desired_users",
    "ids_after",
    "last_reads",
    "live_among",
    "live_ids",
    "live_query",
    "members",
    "members_of",
    "messages_after",
    "messages_before",
    "newest_message_at",
    "read_states",
    "undated_conversations",
    "undated_message",
    "undated_messages",
]


def _where_live(binding: BoundModels, query: Select[Any], *roles: str) -> Select[Any]:
    """``query`` narrowed to rows not soft-deleted, for each of ``roles``."""
    for role in roles:
        condition = binding.live(role)
        if condition is not None:
            query = query.where(condition)
    return query


def _or_null(column: Any) -> Any:
    return null() if column is None else column


def conversations_of_users(b: BoundModels, conn: Connection, user_ids: Collection[str]) -> set[str]:
    """Conversations the given users take part in."""
    conversation, user = (
        b.column("participant", "conversation_id"),
        b.column("participant", "user_id"),
    )
    query = select(conversation).where(user.in_(b.typed_ids(user, user_ids)))
    return {str(value) for value in conn.scalars(query)}


def conversations_of_deleted_users(
    b: BoundModels, conn: Connection, user_ids: Collection[str]
) -> set[str]:
    """Conversations whose channel the users' deletion changes.

    Those they take part in, and those of what the deletion cascades to in the
    database: their invitations and proposals, and the invitations and proposals
    of the events they organize (the channel's name and event go with them).
    """
    part_user = b.column("participant", "user_id")
    ids = b.typed_ids(part_user, user_ids)
    organized = select(b.column("event", "id")).where(b.column("event", "organizer_id").in_(ids))
    inv, prop = "invitation", "proposal"
    query = union(
        select(b.column("participant", "conversation_id")).where(part_user.in_(ids)),
        select(b.column(inv, "conversation_id")).where(
            or_(b.column(inv, "user_id").in_(ids), b.column(inv, "event_id").in_(organized))
        ),
        select(b.column(prop, "conversation_id")).where(
            or_(b.column(prop, "proposer_id").in_(ids), b.column(prop, "event_id").in_(organized))
        ),
    )
    return {str(value) for value in conn.scalars(query) if value is not None}


def conversations_of_events(
    b: BoundModels, conn: Connection, event_ids: Collection[str]
) -> set[str]:
    """Conversations opened by the given events' invitations and proposals."""
    queries = []
    for role in ("invitation", "proposal"):
        event = b.column(role, "event_id")
        queries.append(
            select(b.column(role, "conversation_id")).where(
                event.in_(b.typed_ids(event, event_ids))
            )
        )
    return {str(value) for value in conn.scalars(union(*queries)) if value is not None}


def ids_after(
    b: BoundModels,
    conn: Connection,
    kind: str,
    after: str | None,
    limit: int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    only: Collection[str] | None = None,
) -> list[str]:
    """Up to ``limit`` ids of live users or conversations after ``after``, in id order.

    Keyset pages for resync and backfill: a crash resumes from the last id done.
    Conversations can be narrowed to a creation-time range or to given ids.
    """
    role = "user" if kind == "user" else "conversation"
    key = b.column(role, "id")
    query = _where_live(b, select(key).order_by(key).limit(limit), role)
    if after is not None:
        query = query.where(key > b.typed_ids(key, [after])[0])
    created = b.column("conversation", "created_at")
    if since is not None:
        query = query.where(created >= since)
    if until is not None:
        query = query.where(created <= until)
    if only is not None:
        query = query.where(key.in_(b.typed_ids(key, only)))
    return [str(value) for value in conn.scalars(query)]


def live_ids(b: BoundModels, conn: Connection, role: str) -> list[str]:
    """Every live row's id of a role (user, conversation or message)."""
    return [str(value) for value in conn.scalars(live_query(b, role, b.column(role, "id")))]


def live_among(b: BoundModels, conn: Connection, role: str, ids: Collection[str]) -> set[str]:
    """Those of ``ids`` that name a live row of a role (ids no row can have are not)."""
    key = b.column(role, "id")
    query = live_query(b, role, key).where(key.in_(_row_ids(key, ids)))
    return {str(value) for value in conn.scalars(query)}


def live_query(b: BoundModels, role: str, *columns: Any) -> Select[Any]:
    """``SELECT columns FROM`` the role's model, its live rows only."""
    return _where_live(b, select(*columns).select_from(b.model_for(role)), role)


def desired_users(
    b: BoundModels, conn: Connection, user_ids: Collection[str]
) -> dict[str, DesiredUser]:
    """Stream users for the given ids; ids with no live user are absent.

    The name is ``user_name``'s expression, else the profile's full name, else the email,
    else the id; the image is ``user_image``'s expression, else the avatar.
    """
    key = b.column("user", "id")
    name = b.user_name(b) if b.user_name else _or_null(b.column("profile", "full_name"))
    image = b.user_image(b) if b.user_image else _or_null(b.column("profile", "avatar_url"))
    query = select(key, _or_null(b.column("user", "email")), name, image).where(
        key.in_(_row_ids(key, user_ids))
    )
    if b.profile is not None:
        query = query.outerjoin(b.profile, b.column("profile", "user_id") == key)
    return {
        str(uid): DesiredUser(str(uid), str(full_name or email or uid), avatar or None)
        for uid, email, full_name, avatar in conn.execute(_where_live(b, query, "user"))
    }


def desired_channels(
    b: BoundModels, conn: Connection, conversation_ids: Collection[str], legacy: bool = False
) -> dict[str, DesiredChannel]:
    """Desired channels for the given live conversations; other ids are absent."""
    key = b.column("conversation", "id")
    ids = _row_ids(key, conversation_ids)
    found = {
        str(value)
        for value in conn.scalars(_where_live(b, select(key).where(key.in_(ids)), "conversation"))
    }
    origins = {role: _origins(b, conn, role, ids) for role in ("invitation", "proposal")}
    members_of = members(b, conn, ids)
    return {
        cid: desired_channel(
            cid,
            members_of.get(cid, ()),
            origins["invitation"].get(cid),
            origins["proposal"].get(cid),
            legacy,
        )
        for cid in found
    }


def _origins(
    b: BoundModels, conn: Connection, role: str, ids: list[Any]
) -> dict[str, tuple[str, str, str, str]]:
    """Each conversation's newest live invitation (or proposal): its id, the channel's
    creator (the organizer, or the proposer), the event's title and id."""
    creator = (
        b.column("event", "organizer_id") if role == "invitation" else b.column(role, "proposer_id")
    )
    conversation, event_id = b.column(role, "conversation_id"), b.column("event", "id")
    query = (
        select(conversation, b.column(role, "id"), creator, b.column("event", "title"), event_id)
        .join(b.event, event_id == b.column(role, "event_id"))
        .where(conversation.in_(ids))
        .order_by(b.column(role, "id").desc())
    )
    return {
        str(cid): (str(oid), str(who), title, str(eid))
        for cid, oid, who, title, eid in conn.execute(_where_live(b, query, role, "event"))
    }


def members(b: BoundModels, conn: Connection, ids: list[Any]) -> dict[str, tuple[str, ...]]:
    """The live members of conversations (``ids`` of the conversation column's type)."""
    conversation, user = (
        b.column("participant", "conversation_id"),
        b.column("participant", "user_id"),
    )
    query = select(conversation, user).where(conversation.in_(ids))
    if b.live("user") is not None:
        query = query.join(b.user, b.column("user", "id") == user)
    found: dict[str, list[str]] = {}
    for cid, uid in conn.execute(_where_live(b, query, "participant", "user")):
        found.setdefault(str(cid), []).append(str(uid))
    return {cid: tuple(sorted(uids)) for cid, uids in found.items()}


def _read_states(
    b: BoundModels, conn: Connection, ids: list[Any]
) -> dict[str, dict[str, datetime]]:
    """Each member's last-read time, by conversation (``ids`` of the conversation column's
    type); empty when the app keeps no read state."""
    last_read = b.last_read_column()
    if last_read is None:
        return {}
    conversation = b.column("participant", "conversation_id")
    user = b.column("participant", "user_id")
    query = select(conversation, user, last_read).where(
        conversation.in_(ids), last_read.is_not(None)
    )
    found: dict[str, dict[str, datetime]] = {}
    for cid, uid, moment in conn.execute(query):
        found.setdefault(str(cid), {})[str(uid)] = moment
    return found


def _message_columns(b: BoundModels) -> list[Any]:
    names = ("id", "conversation_id", "sender_id", "content", "created_at")
    return [b.column("message", name) for name in names]


def _messages(b: BoundModels, conn: Connection, query: Select[Any]) -> list[DesiredMessage]:
    return [
        DesiredMessage(
            str(mid), str(cid), None if sender is None else str(sender), content or "", created
        )
        for mid, cid, sender, content, created in conn.execute(_where_live(b, query, "message"))
    ]


def desired_messages(
    b: BoundModels, conn: Connection, message_ids: Collection[str]
) -> dict[str, DesiredMessage]:
    """The given live messages as Stream should hold them; other ids are absent."""
    key = b.column("message", "id")
    query = select(*_message_columns(b)).where(key.in_(_row_ids(key, message_ids)))
    return {message.id: message for message in _messages(b, conn, query)}


def messages_after(
    b: BoundModels,
    conn: Connection,
    conversation_id: str,
    after: tuple[datetime, str] | None,
    limit: int,
    since: datetime | None = None,
) -> list[DesiredMessage]:
    """A conversation's live messages after ``(created_at, id)`` (and created after
    ``since``, when given), oldest first."""
    key, conversation, _, _, created = _message_columns(b)
    query = (
        select(*_message_columns(b))
        .where(conversation == b.typed_ids(conversation, [conversation_id])[0])
        .order_by(created, key)
        .limit(limit)
    )
    if after is not None:
        moment, message_id = after
        mid = b.typed_ids(key, [message_id])[0]
        query = query.where(tuple_(created, key) > tuple_(literal(moment), literal(mid)))
    if since is not None:
        query = query.where(created > since)
    return _messages(b, conn, query)


def messages_before(
    b: BoundModels,
    conn: Connection,
    conversation_id: str,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[DesiredMessage]:
    """Up to ``limit`` of a conversation's live messages before ``(created_at, id)``, newest
    first (Stream's pages' order); those without ``created_at`` are left out."""
    key, conversation, _, _, created = _message_columns(b)
    query = (
        select(*_message_columns(b))
        .where(conversation == b.typed_ids(conversation, [conversation_id])[0])
        .where(created.is_not(None))
        .order_by(created.desc(), key.desc())
        .limit(limit)
    )
    if before is not None:
        moment, message_id = before
        mid = b.typed_ids(key, [message_id])[0]
        query = query.where(tuple_(created, key) < tuple_(literal(moment), literal(mid)))
    return _messages(b, conn, query)


def undated_messages(
    b: BoundModels, conn: Connection, conversation_id: str, after: str | None, limit: int
) -> list[DesiredMessage]:
    """Up to ``limit`` of a conversation's live messages without ``created_at``, in id order
    after ``after``."""
    key, conversation, _, _, created = _message_columns(b)
    query = (
        select(*_message_columns(b))
        .where(conversation == b.typed_ids(conversation, [conversation_id])[0])
        .where(created.is_(None))
        .order_by(key)
        .limit(limit)
    )
    if after is not None:
        query = query.where(key > b.typed_ids(key, [after])[0])
    return _messages(b, conn, query)


def undated_conversations(
    b: BoundModels, conn: Connection, conversation_ids: Collection[str]
) -> set[str]:
    """Those of the conversations that have live messages without ``created_at``."""
    _, conversation, _, _, created = _message_columns(b)
    ids = _row_ids(conversation, conversation_ids)
    query = select(conversation).distinct().where(conversation.in_(ids), created.is_(None))
    return {str(value) for value in conn.scalars(_where_live(b, query, "message"))}


def undated_message(b: BoundModels, conn: Connection, conversation_id: str) -> str | None:
    """A live message of the conversation without ``created_at``, if it has one (the history
    import orders by it and cannot place such a message)."""
    found = undated_messages(b, conn, conversation_id, None, 1)
    return found[0].id if found else None


def _row_ids(column: Any, values: Iterable[str]) -> list[Any]:
    """Target ids in the column's type, leaving out values no row can have (``"x"`` for a UUID
    column): a target id edited by hand names nothing, rather than failing the whole batch."""
    python_type = column.type.python_type
    ids = []
    for value in values:
        try:
            ids.append(python_type(value))
        except (TypeError, ValueError):
            continue
    return ids


def read_states(
    b: BoundModels, conn: Connection, conversation_ids: Collection[str]
) -> dict[str, dict[str, datetime]]:
    """Members' last-read times by conversation (empty when the app keeps none)."""
    key = b.column("participant", "conversation_id")
    return _read_states(b, conn, b.typed_ids(key, conversation_ids))


def count(b: BoundModels, conn: Connection, role: str) -> int:
    """How many live rows a role has."""
    return int(conn.scalar(live_query(b, role, func.count())) or 0)


def members_of(b: BoundModels, conn: Connection, conversation_id: str) -> set[str]:
    """The (live) members of one conversation."""
    ids = b.typed_ids(b.column("participant", "conversation_id"), [conversation_id])
    return set(members(b, conn, ids).get(conversation_id, ()))


def last_reads(
    b: BoundModels, conn: Connection, conversation_id: str, user_ids: Collection[str]
) -> dict[str, datetime]:
    """The read times of those of ``user_ids`` who are live participants of the
    conversation and have read it (those who left, or never read, are absent)."""
    last_read = b.last_read_column()
    if last_read is None:
        return {}
    conversation, user = (
        b.column("participant", "conversation_id"),
        b.column("participant", "user_id"),
    )
    query = select(user, last_read).where(
        conversation == b.typed_ids(conversation, [conversation_id])[0],
        user.in_(_row_ids(user, user_ids)),
        last_read.is_not(None),
    )
    if b.live("user") is not None:
        query = query.join(b.user, b.column("user", "id") == user)
    return {
        str(uid): moment
        for uid, moment in conn.execute(_where_live(b, query, "participant", "user"))
    }


def newest_message_at(
    b: BoundModels, conn: Connection, conversation_id: str, moment: datetime
) -> DesiredMessage | None:
    """The conversation's newest live message created at or before ``moment`` (what a
    read at that time read last), if it has one."""
    key, conversation, _, _, created = _message_columns(b)
    query = (
        select(*_message_columns(b))
        .where(conversation == b.typed_ids(conversation, [conversation_id])[0])
        .where(created <= moment)
        .order_by(created.desc(), key.desc())
        .limit(1)
    )
    found = _messages(b, conn, query)
    return found[0] if found else None
