"""Apply one Stream event to the app's own tables, through the binding.

- ``message.new`` inserts the message (its sender, text, the conversation of its
  channel in the channel map, Stream's ``created_at``; the app's default makes its id)
  and records its two ids (born in Stream); a message recorded already is left alone.
- ``message.updated`` sets its text; ``message.deleted`` deletes it (the binding's
  soft-delete mark, else a hard delete). Out of order, level-triggered: an update or a
  deletion of a message not yet written writes it (deleted), and its ``message.new``
  finds it recorded. The conflict rule holds for a message born on either side: the
  later edit wins (``updated_at``, recorded in the message map either side; an edit of
  the app's still on its way to Stream by its outbox row's time), a deletion wins over
  an edit.
- ``message.read`` moves the participant's last-read time forward, never back.
- ``member.added``, ``member.removed``, ``channel.updated``: the database is the
  authority on a conversation; a change a client made in Stream writes one outbox row
  (``reconcile``) so that the worker puts the channel back as the database has it.

A channel the channel map does not know (created client-side) is reported, not made a
conversation. The mirror's own calls coming back (:func:`.events.own_echo`) write
nothing. Writes go through SQLAlchemy Core on a connection of the applier's own, never an
ORM session (the capture's listeners never see them), in a transaction marked
``stream_outbox.origin = stream`` (the capture triggers write nothing for it): what
came from Stream is never sent back.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    delete,
    insert,
    inspect,
    select,
    text,
    tuple_,
)
from sqlalchemy import update as sql_update
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.capture import write_changes
from stream_outbox.app_hooks.changes import Change, Target
from stream_outbox.app_hooks.outbox import TargetKind, channel_map
from stream_outbox.app_hooks.trigger_plpgsql import ORIGIN_SETTING, ORIGIN_STREAM
from stream_outbox.worker.errors import PermanentError, RetryableError
from stream_outbox.worker.inbound.events import (
    CHANNEL_EVENTS,
    BadEvent,
    InboundEvent,
    InboundMessage,
    edit_applies,
    own_echo,
    parse_event,
)
from stream_outbox.worker.inbound.inbox_event import InboxEvent
from stream_outbox.worker.store import message_map
from stream_outbox.worker.store.message_map import MapEntry, app_born_id
from stream_outbox.worker.store.repository import OutboxRepository

__all__ = [
    "RECONCILE_EVENT",
    "Lookups",
    "Outcome",
    "UnknownUser",
    "apply_event",
    "apply_on",
    "mark_stream_origin",
    "read_ahead",
]

# The event of the outbox row that undoes a client's change of a conversation's channel
RECONCILE_EVENT = "reconcile"


class Outcome(str):
    """What applying an event did, in one line; ``ignored`` when nothing was to apply
    (an own echo, an unknown channel, an event type not applied): the inbox row is
    settled ``ignored`` rather than ``done``."""

    ignored: bool

    def __new__(cls, line: str, *, ignored: bool = False) -> Outcome:
        made = super().__new__(cls, line)
        made.ignored = ignored
        return made


OWN_ECHO = Outcome("own echo: ignored", ignored=True)


class UnknownUser(PermanentError):
    """A Stream event names a user the app does not have (live)."""


def apply_event(engine: Engine, binding: Binding, event: Mapping[str, Any]) -> str:
    """Apply one Stream event (its webhook JSON) to the app's tables in one transaction;
    returns the outcome in one line (an :class:`Outcome`).

    Idempotent and safe out of order. Raises :class:`~stream_outbox.worker.errors.
    PermanentError` (a :class:`~.events.BadEvent`, :class:`UnknownUser`, a row the app's
    table refuses) for an event that can never apply, :class:`RetryableError` when the
    database cannot be reached.
    """
    with _refusals(str(event.get("type") or "an event")), engine.begin() as conn:
        mark_stream_origin(conn)
        return apply_on(conn, binding, event)


def mark_stream_origin(conn: Connection) -> None:
    """Mark the connection's transaction as writing what came from Stream
    (``stream_outbox.origin = stream``): the capture triggers write nothing for it."""
    conn.execute(
        text("SELECT set_config(:name, :value, true)"),
        {"name": ORIGIN_SETTING, "value": ORIGIN_STREAM},
    )


def apply_on(
    conn: Connection, binding: Binding, event: Mapping[str, Any], seen: Lookups | None = None
) -> str:
    """:func:`apply_event` on the caller's connection and transaction, marked already
    (:func:`mark_stream_origin`), raising the same errors; ``seen``: the lookups the
    transaction's events share (:func:`read_ahead`), kept up as this event reads more."""
    parsed = parse_event(event)
    handler = _HANDLERS.get(parsed.type)
    if handler is None:
        return Outcome(f"{parsed.type}: not an event the app applies", ignored=True)
    with _refusals(parsed.type):
        return handler(_Applier(conn, binding, seen or Lookups()), parsed)


@contextmanager
def _refusals(event_type: str) -> Iterator[None]:
    """The database's errors as the applier's: refused (permanent) or unreachable."""
    try:
        yield
    except (IntegrityError, DataError) as exc:
        raise PermanentError(f"the app's table refused {event_type}: {exc.orig}") from exc
    except (OperationalError, InterfaceError) as exc:
        raise RetryableError(f"database unavailable: {exc.orig}") from exc


@dataclass
class Lookups:
    """What the events of one transaction read alike, read once for them all: each
    channel's conversation (or why it has none), the app's users found live, and the map
    rows of the messages held already (each for its first event only: applying the
    event may change it)."""

    conversations: dict[str, str | Outcome] = field(default_factory=dict)
    users: set[str] = field(default_factory=set)
    entries: dict[str, MapEntry | None] = field(default_factory=dict)


def read_ahead(conn: Connection, binding: Binding, events: Sequence[InboxEvent]) -> Lookups:
    """The lookups of ``events``, about to be applied in the connection's transaction, in a
    few statements: their channels' conversations, their users, their messages held
    until the transaction ends (held outside a savepoint, a savepoint's rollback keeps
    them) and those messages' map rows. What it leaves out is read event by event."""
    seen = Lookups()
    seen.conversations.update(_conversations(conn, binding, {e.cid for e in events if e.cid}))
    seen.users.update(_live(conn, binding, "user", {e.user_id for e in events if e.user_id}))
    messages = {e.message_id for e in events if e.message_id}
    message_map.hold_all(conn, messages)
    found = message_map.entries_for_stream_ids(conn, messages)
    seen.entries.update({stream_id: found.get(stream_id) for stream_id in messages})
    return seen


def _live(conn: Connection, b: Binding, role: str, ids: Collection[str]) -> set[str]:
    """Those of ``ids`` naming a live row of a role, spelled as given."""
    if not ids:
        return set()
    live = reads.live_among(b, conn, role, ids)
    return {given for given in ids if _as_key(b, role, given) in live}


def _as_key(b: Binding, role: str, given: str) -> str | None:
    """An id as the role's key column spells it (``None``: no row can have it)."""
    try:
        return str(b.typed_ids(b.column(role, "id"), [given])[0])
    except (TypeError, ValueError):
        return None


def _conversations(conn: Connection, b: Binding, cids: Collection[str]) -> dict[str, str | Outcome]:
    """The live conversation of each channel (Stream's ``type:id``), or the outcome of a
    channel the app does not know (reported, never created) or no longer has."""
    pairs = {cid: cid.partition(":")[::2] for cid in cids}
    query = select(channel_map).where(
        tuple_(channel_map.c.channel_type, channel_map.c.channel_id).in_(list(pairs.values()))
    )
    rows = {(r.channel_type, r.channel_id): r for r in conn.execute(query)} if pairs else {}
    ids = {str(r.conversation_id) for r in rows.values() if r.deleted_at is None}
    live = _live(conn, b, "conversation", ids)
    found: dict[str, str | Outcome] = {}
    for cid, pair in pairs.items():
        row = rows.get(pair)
        if row is None:
            found[cid] = Outcome(f"unknown channel {cid}: reported", ignored=True)
        elif str(row.conversation_id) not in live:
            found[cid] = Outcome(f"channel {cid}: its conversation is gone", ignored=True)
        else:
            found[cid] = str(row.conversation_id)
    return found


@dataclass(frozen=True)
class _Applier:
    """One event: its transaction's connection, the binding's columns, and the lookups the
    transaction's events share."""

    conn: Connection
    b: Binding
    seen: Lookups

    # -- the app's columns -----------------------------------------------------------------

    def column(self, role: str, name: str) -> Column[Any]:
        """The table column behind a role's field (Core: no ORM session, no listener)."""
        attribute = self.b.attribute_name(role, name)
        assert attribute is not None  # ids, keys and texts are never optional
        return self.by_attribute(role, attribute)

    def by_attribute(self, role: str, attribute: str) -> Column[Any]:
        """The table column behind a role's attribute."""
        column: Column[Any] = inspect(self.b.model_for(role)).attrs[attribute].columns[0]
        return column

    def mark(self) -> Column[Any] | None:
        """The message's soft-delete mark, if the binding has one."""
        name = self.b.soft_delete.get("message")
        return None if name is None else self.by_attribute("message", name)

    def typed(self, role: str, name: str, value: str) -> Any:
        """``value`` (Stream's text) in the column's Python type."""
        try:
            return self.b.typed_ids(self.b.column(role, name), [value])[0]
        except (TypeError, ValueError):
            raise BadEvent(f"{value!r} cannot be the app's {role} {name}") from None

    # -- lookups ---------------------------------------------------------------------------

    def conversation_of(self, event: InboundEvent) -> str | Outcome:
        """The live conversation of the event's channel, or the outcome of a channel the
        app does not know (reported, never created) or no longer has."""
        if event.channel_type is None or event.channel_id is None:
            return Outcome(f"{event.type} without a channel: ignored", ignored=True)
        cid = f"{event.channel_type}:{event.channel_id}"
        if cid not in self.seen.conversations:
            self.seen.conversations.update(_conversations(self.conn, self.b, [cid]))
        return self.seen.conversations[cid]

    def sender(self, user_id: str | None, message_id: str) -> Any:
        """The app's user behind Stream's user id (``None`` for none)."""
        if user_id is None:
            return None
        if user_id not in self.seen.users and not reads.live_among(
            self.b, self.conn, "user", [user_id]
        ):
            raise UnknownUser(f"message {message_id}: user {user_id!r} is not a user of the app")
        self.seen.users.add(user_id)
        return self.typed("message", "sender_id", user_id)

    def lock(self, stream_id: str) -> MapEntry | None:
        """Hold Stream's message ``stream_id`` for this transaction (two deliveries of one
        message apply one after the other); its map row, if any (read ahead with it held
        already, for the first event of the message: :func:`read_ahead`)."""
        if stream_id in self.seen.entries:
            return self.seen.entries.pop(stream_id)
        message_map.hold(self.conn, stream_id)
        return message_map.entry_for_stream_id(self.conn, stream_id)

    def changed_in_app_after(
        self, app_id: str, moment: datetime | None, events: tuple[str, ...]
    ) -> bool:
        """Whether a change of the app's message (of ``events``), written after
        ``moment``, is still on its way to Stream: there, it will win over Stream's."""
        if moment is None:
            return False
        written = OutboxRepository.newest_open_change(
            self.conn, TargetKind.MESSAGE.value, app_id, events
        )
        return written is not None and written > moment

    def created_at_of(self, stream_id: str | None) -> datetime | None:
        """The app's ``created_at`` of Stream's message ``stream_id`` (born in the app, or
        in Stream and recorded), or ``None`` when the app does not hold it."""
        if stream_id is None:
            return None
        app_id = app_born_id(stream_id)
        if app_id is None:
            entry = message_map.entry_for_stream_id(self.conn, stream_id)
            app_id = None if entry is None else entry.message_id
        if app_id is None:
            return None
        key = self.column("message", "id")
        try:
            typed = self.typed("message", "id", app_id)
        except BadEvent:
            return None
        found = self.conn.scalar(select(self.column("message", "created_at")).where(key == typed))
        return _as_aware(found)

    # -- writes ----------------------------------------------------------------------------

    def insert_message(self, conversation_id: str, message: InboundMessage, deleted: bool) -> str:
        """Write a message born in Stream into the app's table, and its two ids; the app's
        id. ``deleted``: as deleted (a deletion that arrived first)."""
        key = self.column("message", "id")
        created = self.column("message", "created_at")
        moment = message.created_at or datetime.now(UTC)
        values: dict[Any, Any] = {
            self.column("message", "conversation_id"): self.typed(
                "message", "conversation_id", conversation_id
            ),
            self.column("message", "sender_id"): self.sender(message.user_id, message.id),
            self.column("message", "content"): message.text,
            created: _moment_for(created, moment),
        }
        if not _makes_its_own(key):
            if _python_type(key) is not str:
                raise PermanentError(
                    f"the app's message id {key.table.name}.{key.name} has no default: "
                    "a message sent in Stream cannot get an id"
                )
            values[key] = message.id  # a text key with no default: Stream's id
        mark = self.mark()
        if deleted and mark is not None:
            values[mark] = _moment_for(mark, message.deleted_at or datetime.now(UTC))
        row = {column.key: value for column, value in values.items()}  # a cached statement
        made = str(self.conn.scalar(insert(key.table).returning(key), row))
        if deleted and mark is None:
            self.conn.execute(delete(key.table).where(key == self.typed("message", "id", made)))
        message_map.record(
            self.conn,
            made,
            message.id,
            updated_at=message.updated_at or message.created_at,
            deleted_at=(message.deleted_at or datetime.now(UTC)) if deleted else None,
        )
        return made

    def set_text(self, message_id: str, new_text: str) -> bool:
        """Set a live message's text; whether it changed."""
        key, content = self.column("message", "id"), self.column("message", "content")
        statement = (
            sql_update(key.table)
            .where(
                key == self.typed("message", "id", message_id), content.is_distinct_from(new_text)
            )
            .values({content: new_text})
        )
        mark = self.mark()
        if mark is not None:
            statement = statement.where(mark.is_(None))
        return bool(self.conn.execute(statement).rowcount)

    def delete_message(self, message_id: str, at: datetime | None) -> bool:
        """Delete a message: the soft-delete mark, else the row; whether it was there."""
        key, mark = self.column("message", "id"), self.mark()
        where = key == self.typed("message", "id", message_id)
        if mark is None:
            return bool(self.conn.execute(delete(key.table).where(where)).rowcount)
        moment = _moment_for(mark, at or datetime.now(UTC))
        statement = sql_update(key.table).where(where, mark.is_(None)).values({mark: moment})
        return bool(self.conn.execute(statement).rowcount)


def _python_type(column: Column[Any]) -> type[Any] | None:
    try:
        found: type[Any] = column.type.python_type
    except NotImplementedError:
        return None
    return found


def _moment_for(column: Column[Any], moment: datetime) -> Any:
    """Stream's time as the app's column holds times: text (ISO 8601), a timestamp without
    a time zone (UTC, whatever the session's zone), or with one."""
    if _python_type(column) is str:
        return moment.isoformat()
    if isinstance(column.type, DateTime) and not column.type.timezone:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _as_aware(value: Any) -> datetime | None:
    """A time the app holds (text, naive UTC or aware) as an aware time; ``None`` for none."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _makes_its_own(key: Column[Any]) -> bool:
    """Whether the table gives a new row its id (a default, a sequence, an identity)."""
    return (
        key.default is not None
        or key.server_default is not None
        or key.table.autoincrement_column is key
    )


# -- messages ---------------------------------------------------------------------------


def _message_new(a: _Applier, event: InboundEvent) -> Outcome:
    message = _message_of(event)
    entry = a.lock(message.id)
    if own_echo(event, entry):
        return OWN_ECHO
    if message.app_id is not None:
        return Outcome("message born in the app: nothing to insert", ignored=True)
    if entry is not None:
        return Outcome("message recorded already: nothing to do")
    return _insert(a, event, message, deleted=False, said="message inserted as {}")


def _message_updated(a: _Applier, event: InboundEvent) -> Outcome:
    message = _message_of(event)
    entry = a.lock(message.id)
    if own_echo(event, entry):
        return OWN_ECHO
    if message.app_id is not None:  # a client edited a message born in the app
        born_in_app = message_map.entry_for(a.conn, message.app_id)
        return _edit(a, message, message.app_id, born_in_app, " (born in the app)")
    if entry is None:  # before its message.new: written as it is now
        said = "message inserted as {} (its update came first)"
        return _insert(a, event, message, deleted=False, said=said)
    return _edit(a, message, entry.message_id, entry, "")


def _edit(
    a: _Applier, message: InboundMessage, app_id: str, entry: MapEntry | None, born: str
) -> Outcome:
    """The conflict rule for a client's edit of the app's message ``app_id`` (``entry``:
    its map row, if any): a deletion wins, the later edit wins, whichever side made it
    (one applied from Stream, or sent to it: the map's time; one of the app's still on
    its way to Stream: its outbox row's)."""
    if not edit_applies(entry, message.updated_at):
        why = "deleted" if entry is not None and entry.deleted_at is not None else None
        return Outcome(f"edit ignored: {why or 'a later edit was applied'}")
    if a.changed_in_app_after(app_id, message.updated_at, _TEXT_CHANGES):
        return Outcome("edit ignored: a later edit of the app's is on its way to Stream")
    if not a.set_text(app_id, message.text):
        return Outcome("text in step already")
    message_map.record_edit(a.conn, app_id, message.id, message.updated_at)
    return Outcome(f"text set{born}")


def _message_deleted(a: _Applier, event: InboundEvent) -> Outcome:
    message = _message_of(event)
    entry = a.lock(message.id)
    if own_echo(event, entry):
        return OWN_ECHO
    if message.app_id is not None:  # a client deleted a message born in the app
        if a.changed_in_app_after(message.app_id, message.deleted_at, ("restore",)):
            return Outcome("deletion ignored: the app's later restore is on its way to Stream")
        gone = a.delete_message(message.app_id, message.deleted_at)
        return Outcome("deleted (born in the app)" if gone else "deleted already")
    if entry is None:  # before its message.new: recorded deleted
        said = "message {} recorded deleted (its deletion came first)"
        return _insert(a, event, message, deleted=True, said=said)
    if entry.deleted_at is not None:
        return Outcome("deleted already")
    a.delete_message(entry.message_id, message.deleted_at)
    message_map.mark_deleted(a.conn, entry.message_id)
    return Outcome("message deleted")


def _insert(
    a: _Applier, event: InboundEvent, message: InboundMessage, *, deleted: bool, said: str
) -> Outcome:
    """Insert the message in its channel's conversation (``said`` names the new row's id
    in its ``{}``), or what stands in the way (an unknown channel)."""
    conversation = a.conversation_of(event)
    if isinstance(conversation, Outcome):
        return conversation
    return Outcome(said.format(a.insert_message(conversation, message, deleted=deleted)))


def _message_of(event: InboundEvent) -> InboundMessage:
    assert event.message is not None  # parse_event refuses a message event without one
    return event.message


# -- reads, members, channels -------------------------------------------------------------


def _message_read(a: _Applier, event: InboundEvent) -> Outcome:
    if own_echo(event, None):
        return OWN_ECHO
    last_read = a.b.last_read_column()
    if last_read is None:
        return Outcome("the app keeps no read state: ignored", ignored=True)
    if event.user_id is None or event.created_at is None:
        return Outcome("message.read without a user or a time: ignored", ignored=True)
    conversation = a.conversation_of(event)
    if isinstance(conversation, Outcome):
        return conversation
    column = a.by_attribute("participant", last_read.key)
    moment = _moment_for(column, event.created_at)
    behind = column.is_(None) | (column < moment)
    upto = a.created_at_of(event.read_message_id)
    if upto is not None:  # a read up to a message the app's read time has passed: known
        behind = column.is_(None) | ((column < moment) & (column < _moment_for(column, upto)))
    statement = (
        sql_update(column.table)
        .where(
            a.column("participant", "conversation_id")
            == a.typed("participant", "conversation_id", conversation),
            a.column("participant", "user_id") == a.typed("participant", "user_id", event.user_id),
            behind,
        )
        .values({column: moment})
    )
    moved = a.conn.execute(statement).rowcount
    return Outcome("read moved forward" if moved else "read at or past it already")


def _channel_change(a: _Applier, event: InboundEvent) -> Outcome:
    if own_echo(event, None):
        return OWN_ECHO
    conversation = a.conversation_of(event)
    if isinstance(conversation, Outcome):
        return conversation
    if _in_step(a, event, conversation):
        return Outcome("channel in step with the database already")
    target = Target(TargetKind.CONVERSATION.value, conversation)
    write_changes(a.conn, [Change(target, RECONCILE_EVENT, {})])
    return Outcome(f"{event.type} made in Stream: undone (conversation {conversation} reconciled)")


def _in_step(a: _Applier, event: InboundEvent, conversation: str) -> bool:
    """Whether the change leaves the channel as the database has it (the mirror's own
    member and channel calls coming back): a member added who is one, or removed who is
    not; a channel whose fields the product owns are the database's."""
    if event.type == "channel.updated":
        wanted = reads.desired_channels(a.b, a.conn, [conversation]).get(conversation)
        held = event.channel or {}
        return wanted is not None and all(held.get(k) == v for k, v in wanted.data.items())
    member = event.member_id or event.user_id
    present = member in reads.members_of(a.b, a.conn, conversation)
    return present == (event.type == "member.added")


# The outbox events of the app's changes of a message's text: an edit, a restore
_TEXT_CHANGES = ("update", "restore")

_HANDLERS: dict[str, Callable[[_Applier, InboundEvent], Outcome]] = {
    "message.new": _message_new,
    "message.updated": _message_updated,
    "message.deleted": _message_deleted,
    "message.read": _message_read,
    **dict.fromkeys(CHANNEL_EVENTS, _channel_change),
}
