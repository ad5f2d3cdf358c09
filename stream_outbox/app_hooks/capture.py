"""Transparent capture: session listeners that write outbox rows in the app's transaction.

``install(session_factory)`` once at start-up. From then on every ORM change that
matters to Stream, made through sessions of that factory, writes outbox rows on
the session's own connection, inside its transaction: a rollback leaves no row,
a commit always has its rows. Raw SQL is not seen (run a resync after it, or
capture by database triggers instead: ``stream-outbox triggers install``).

Where the capture triggers are installed, the listeners stand by: their one
statement per transaction writes nothing when a trigger fired in it (a setting
the triggers mark the transaction with), so the two modes never both write, and
switching from one to the other under load loses and doubles nothing.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Result, event, insert, inspect, select, tuple_
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, SessionTransaction, object_session

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.changes import EVENT_KIND, Change, Rule, Target, merge_changes
from stream_outbox.app_hooks.channel_ids import InvalidStreamId, choose_channel_id
from stream_outbox.app_hooks.default_binding import binding_or_reference
from stream_outbox.app_hooks.outbox import (
    SCHEMA_REVISION,
    TargetKind,
    channel_map,
    older_than_code,
    outbox,
    schema_revision,
)
from stream_outbox.app_hooks.trigger_plpgsql import MARK_SETTING, MARK_VALUE
from stream_outbox.app_hooks.triggers import triggers_installed

__all__ = ["install", "write_changes"]

log = logging.getLogger(__name__)
_SESSION_KEY = "stream_outbox.capture"
_installed: weakref.WeakKeyDictionary[Any, _Capture] = weakref.WeakKeyDictionary()
_mapped: set[type[Any]] = set()


def install(session_factory: Any, binding: Binding | None = None) -> None:
    """Capture changes made through ``session_factory`` (a ``sessionmaker`` or ``Session`` class).

    ``binding`` defaults to the reference application's. Calling it again for the
    same factory changes nothing.
    """
    if session_factory in _installed:
        return
    binding = binding_or_reference(binding)
    capture = _Capture(binding)
    _installed[session_factory] = capture
    _say_at_start(session_factory)
    event.listen(session_factory, "before_flush", capture.before_flush)
    event.listen(session_factory, "after_flush", capture.after_flush)
    event.listen(session_factory, "before_commit", capture.before_commit)
    event.listen(session_factory, "after_transaction_end", capture.after_transaction_end)
    event.listen(session_factory, "do_orm_execute", capture.do_orm_execute)
    for cls in binding.rules:
        _listen_mapper(cls)


def _say_at_start(session_factory: Any) -> None:
    """Log that the listeners stand by, where the factory's database has capture triggers,
    and an error where its outbox is older than this version's (``stream-outbox migrate``
    not run yet: on-demand migration and channel lookups fail until it is)."""
    bind = getattr(session_factory, "kw", {}).get("bind")
    if bind is None or getattr(bind, "dialect", None) is None or bind.dialect.name != "postgresql":
        return
    try:
        with bind.connect() as conn:
            installed = triggers_installed(conn)
            revision = schema_revision(conn)  # last: a refused read aborts the transaction
    except SQLAlchemyError:  # not reachable yet: the transactions' own check still holds
        return
    if installed:
        log.info(
            "capture triggers are installed in the database: the session listeners stand by "
            "(they write nothing in a transaction where a trigger fired)"
        )
    if older_than_code(revision):
        log.error(
            "the outbox schema is at migration %s, this version needs %s: run "
            "`stream-outbox migrate` (channel lookups and on-demand migration fail until then)",
            revision,
            SCHEMA_REVISION,
        )


_INSERT = (
    "INSERT INTO stream_outbox (target_kind, target_id, event, payload) SELECT * FROM (VALUES "
)
_ROW = "(%s, %s, %s, %s::jsonb)"
# Nothing when a capture trigger wrote this transaction's rows (app_hooks.trigger_sql).
_UNLESS_TRIGGERS = (
    f") AS v WHERE current_setting('{MARK_SETTING}', true) IS DISTINCT FROM '{MARK_VALUE}'"
)
_CHUNK = 500


def write_changes(conn: Connection, changes: list[Change]) -> None:
    """Insert outbox rows for ``changes`` on ``conn``: one statement per 500 rows, which
    writes nothing in a transaction whose rows the capture triggers wrote.

    On PostgreSQL the statement goes straight to the driver, which prepares each
    shape once: this is the one statement the hooks add to a transaction, and
    SQLAlchemy's compile step would double its cost.
    """
    if not changes:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(insert(outbox), [_row(change) for change in changes])
        return
    for start in range(0, len(changes), _CHUNK):
        chunk = changes[start : start + _CHUNK]
        params: list[Any] = []
        for change in chunk:
            payload = json.dumps(dict(change.payload), separators=(",", ":"))
            params += (change.target.kind, change.target.id, change.event, payload)
        statement = _INSERT + ", ".join([_ROW] * len(chunk)) + _UNLESS_TRIGGERS
        conn.exec_driver_sql(statement, tuple(params))


def _row(change: Change) -> dict[str, Any]:
    return {
        "target_kind": change.target.kind,
        "target_id": change.target.id,
        "event": change.event,
        "payload": dict(change.payload),
    }


def _listen_mapper(cls: type[Any]) -> None:
    if cls in _mapped:
        return
    _mapped.add(cls)
    event.listen(cls, "after_insert", _after_insert, propagate=True)
    event.listen(cls, "after_update", _after_update, propagate=True)
    event.listen(cls, "before_delete", _before_delete, propagate=True)


def _capture_of(target: Any) -> _Capture | None:
    session = object_session(target)
    if session is None:
        return None
    capture: _Capture | None = session.info.get(_SESSION_KEY)
    return capture


def _values(target: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(target, name) for name in names}


def _old_values(target: Any, names: tuple[str, ...]) -> dict[str, Any]:
    attrs = inspect(target).attrs
    old = {}
    for name in names:
        history = attrs[name].history
        old[name] = history.deleted[0] if history.deleted else getattr(target, name)
    return old


def _after_insert(mapper: Mapper[Any], conn: Connection, target: Any) -> None:
    capture = _capture_of(target)
    if capture is not None:
        capture.row_changed(conn, target, "insert")


def _after_update(mapper: Mapper[Any], conn: Connection, target: Any) -> None:
    capture = _capture_of(target)
    if capture is not None:
        capture.row_changed(conn, target, "update")


def _before_delete(mapper: Mapper[Any], conn: Connection, target: Any) -> None:
    capture = _capture_of(target)
    if capture is not None:
        capture.row_changed(conn, target, "delete")


@dataclass
class _Transaction:
    """Changes of one session's transaction that are not written yet."""

    flushing: list[Change] = field(default_factory=list)  # of the flush in progress
    deferred: list[Change] = field(default_factory=list)  # flushed, written at commit
    committing: bool = False


class _Capture:
    """Listeners of one installed session factory.

    Changes are written once per transaction, just before COMMIT (one INSERT
    however many flushes the transaction had), except inside a savepoint, where
    each flush writes its rows at once so that rolling back to the savepoint
    drops them with the data.
    """

    def __init__(self, binding: Binding) -> None:
        self.binding = binding
        self.transactions: weakref.WeakKeyDictionary[Session, _Transaction] = (
            weakref.WeakKeyDictionary()
        )

    def _of(self, session: Session) -> _Transaction:
        tx = self.transactions.get(session)
        if tx is None:
            tx = self.transactions[session] = _Transaction()
        return tx

    # -- session events ------------------------------------------------------------------

    def before_flush(self, session: Session, flush_context: Any, instances: Any) -> None:
        session.info[_SESSION_KEY] = self
        self._of(session).flushing = []

    def after_flush(self, session: Session, flush_context: Any) -> None:
        tx = self._of(session)
        changes, tx.flushing = tx.flushing, []
        if tx.committing or session.in_nested_transaction():
            write_changes(session.connection(), merge_changes(changes))
        else:
            tx.deferred += changes

    def before_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            return
        session.flush()
        tx = self._of(session)
        changes, tx.deferred = tx.deferred, []
        write_changes(session.connection(), merge_changes(changes))
        # Flushes after this one (a later before_commit listener) write at once.
        tx.committing = True

    def after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        # A savepoint's end changes nothing here: its rows were written at once.
        if transaction.parent is None:
            self.transactions.pop(session, None)

    def do_orm_execute(self, state: ORMExecuteState) -> Result[Any] | None:
        if not (state.is_update or state.is_delete) or state.bind_mapper is None:
            return None
        rule = self.binding.rule_for(state.bind_mapper.class_)
        if rule is None:
            return None
        return _BulkStatement(self, rule, state).run()

    # -- row events (from the mapper listeners) ------------------------------------------

    def row_changed(self, conn: Connection, target: Any, event_name: str) -> None:
        rule = self.binding.rule_for(type(target))
        if rule is None:
            return
        session = object_session(target)
        assert session is not None
        if event_name == "insert":
            # The common case, kept cheap: it runs inside the app's flush for every new row.
            change = rule.change(event_name, target)
            if change is not None and rule.kind != EVENT_KIND:  # nothing references a new event
                self._of(session).flushing.append(change)
            return
        if event_name == "update":
            attrs = inspect(target).attrs
            if rule.read is not None and attrs[rule.read].history.has_changes():
                read = rule.read_change(_values(target, rule.read_names))
                if read is not None:
                    self._of(session).flushing.append(read)
            if not any(attrs[name].history.has_changes() for name in rule.watched):
                return
            versions = [_old_values(target, rule.names), _values(target, rule.names)]
            event_name = rule.update_event(*versions)
        else:
            versions = [_values(target, rule.names)]
            event_name = rule.delete_event()
        changes = rule.changes(event_name, *versions)
        self._of(session).flushing += self.expand(conn, changes)

    # -- fan-out that needs the database -------------------------------------------------

    def expand(self, conn: Connection, changes: list[Change]) -> list[Change]:
        """Resolve event targets to conversations and enrich deletes with what they need."""
        result: list[Change] = []
        events = {c.target.id for c in changes if c.target.kind == EVENT_KIND}
        if events:
            conversations = reads.conversations_of_events(self.binding, conn, events)
            result += [_conversation_change(cid, "update") for cid in sorted(conversations)]
        for change in changes:
            kind = change.target.kind
            if kind == EVENT_KIND:
                continue
            if change.event in ("delete", "restore") and kind == TargetKind.USER:
                # Participants, invitations, proposals and organized events go with the
                # user (ON DELETE CASCADE, or a soft delete that hides them, or its undoing):
                # their conversations' channels change.
                cids = reads.conversations_of_deleted_users(self.binding, conn, [change.target.id])
                result += [_conversation_change(cid, "update") for cid in sorted(cids)]
            if change.event == "delete" and kind == TargetKind.CONVERSATION:
                payload = {**change.payload, **self.channel_of(conn, change.target.id)}
                change = change._replace(payload=payload)
            result.append(change)
        return result

    def channel_of(self, conn: Connection, conversation_id: str) -> dict[str, Any]:
        """The channel a conversation maps to: from the channel map, else as the rules predict."""
        row = conn.execute(
            select(channel_map.c.channel_type, channel_map.c.channel_id).where(
                channel_map.c.conversation_id == conversation_id
            )
        ).first()
        if row is not None:
            return {"channel_type": row.channel_type, "channel_id": row.channel_id}
        desired = reads.desired_channels(self.binding, conn, [conversation_id]).get(conversation_id)
        if desired is None:
            return {}
        try:
            return {
                "channel_type": desired.channel_type,
                "channel_id": choose_channel_id(desired.facts),
                "predicted": True,
            }
        except InvalidStreamId:
            return {}


def _conversation_change(conversation_id: str, event_name: str) -> Change:
    return Change(Target(TargetKind.CONVERSATION.value, conversation_id), event_name, {})


class _BulkStatement:
    """An ORM-enabled bulk ``update()``/``delete()``: snapshot affected rows around it."""

    def __init__(self, capture: _Capture, rule: Rule, state: ORMExecuteState) -> None:
        self.capture, self.rule, self.state = capture, rule, state
        mapper = state.bind_mapper
        assert mapper is not None
        self.cls = mapper.class_
        self.pk = [prop.key for prop in mapper.iterate_properties if _is_pk(mapper, prop.key)]
        self.names = sorted({*self.pk, rule.key, *rule.payload, *rule.watched, *rule.read_names})

    def run(self) -> Result[Any]:
        conn = self.state.session.connection()
        statement: Any = self.state.statement
        before = self._select(conn, statement.whereclause, lock=True)
        if self.state.is_delete:
            # Expand before the rows (and what cascades from them) are gone.
            event = self.rule.delete_event()
            deleted = [c for row in before for c in self.rule.changes(event, row)]
            changes = self.capture.expand(conn, deleted)
            result = self.state.invoke_statement()
        else:
            result = self.state.invoke_statement()
            changes = self.capture.expand(conn, self._updated(conn, before))
        write_changes(conn, merge_changes(changes))
        return result

    def _updated(self, conn: Connection, before: list[dict[str, Any]]) -> list[Change]:
        after = {self._key(row): row for row in self._select_by_pk(conn, before)}
        changes: list[Change] = []
        for old in before:
            new = after.get(self._key(old), old)
            if any(old[name] != new[name] for name in self.rule.watched):
                changes += self.rule.changes(self.rule.update_event(old, new), old, new)
            read = self.rule.read
            if read is not None and old[read] != new[read]:
                change = self.rule.read_change(new)
                if change is not None:
                    changes.append(change)
        return changes

    def _key(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(row[name] for name in self.pk)

    def _select(self, conn: Connection, where: Any, lock: bool = False) -> list[dict[str, Any]]:
        query = select(*(getattr(self.cls, name).label(name) for name in self.names))
        if where is not None:
            query = query.where(where)
        if lock:
            query = query.with_for_update()
        return [dict(row._mapping) for row in conn.execute(query)]

    def _select_by_pk(self, conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        columns = [getattr(self.cls, name) for name in self.pk]
        keys = [self._key(row) for row in rows]
        where = (
            columns[0].in_([k[0] for k in keys])
            if len(columns) == 1
            else (tuple_(*columns).in_(keys))
        )
        return self._select(conn, where)


def _is_pk(mapper: Mapper[Any], key: str) -> bool:
    prop = mapper.get_property(key)
    columns = getattr(prop, "columns", [])
    return any(column in mapper.primary_key for column in columns)
