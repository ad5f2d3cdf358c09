"""Capture by database triggers: the SQL a binding calls for (pure: no database).

For each table of the binding's rules (``Binding.rules``, the listeners' rules),
PL/pgSQL functions and triggers that write the outbox rows the session listeners
write, in the writing transaction, whoever writes (raw SQL, ``COPY``, ``psql``,
another service):

- INSERT and DELETE: statement triggers over transition tables, at most one outbox
  statement per app statement: a ``COPY`` of 100,000 participants writes one row
  per conversation, and a statement adding nothing to the transaction's rows (the
  second participant of a new conversation) writes none (``app_hooks.trigger_plpgsql``);
- UPDATE: a row trigger on the watched columns only (``UPDATE OF ... WHEN`` they
  changed): an update of anything else runs no function at all;
- READ (a participant's read time, where the binding has one): a row trigger of its
  own on that column (``UPDATE OF last_read_at WHEN`` it changed to a time), writing
  the conversation's ``read`` row with who read (``{"reads": [user_id]}``).

Rows coalesce to one per target per transaction on the pending-row key
``(target_kind, target_id, capture_tx)`` (``ON CONFLICT``: a delete wins, payloads
merge, as :func:`stream_outbox.app_hooks.changes.merge_changes` does). Each firing marks the
transaction (``stream_outbox.capture = triggers``): session listeners still installed
write nothing in it (``stream_outbox.app_hooks.capture``), so the two never both write.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table, inspect
from sqlalchemy.dialects import postgresql

from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.changes import EVENT_KIND, Rule
from stream_outbox.app_hooks.outbox import TargetKind, channel_map, outbox
from stream_outbox.app_hooks.trigger_plpgsql import (
    ARRAYS,
    NEW_ROWS,
    OLD_ROWS,
    function_source,
    insert_rows,
    read_row,
    write_rows,
)

__all__ = [
    "PREFIX",
    "TableTriggers",
    "TriggerError",
    "TriggerSQL",
    "qualified",
    "table_triggers",
]

PREFIX = "stream_outbox_capture"
_quote = postgresql.dialect().identifier_preparer.quote  # type: ignore[no-untyped-call]
_AS_IS = (
    bool,
    int,
    float,
    str,
)  # JSON as they are (stream_outbox.app_hooks.changes._json); others as text


class TriggerError(ValueError):
    """The binding cannot be expressed as database triggers (use the session listeners)."""


@dataclass(frozen=True)
class TriggerSQL:
    """One function and its trigger: DDL, and what ``check`` compares."""

    op: str  # insert | update | delete | read
    function: str  # unqualified name
    body: str  # the PL/pgSQL between the dollar quotes
    create_function: str
    create_trigger: str
    columns: tuple[str, ...]  # "table.column" of every column the function and trigger read

    @property
    def trigger(self) -> str:
        """The trigger's name (one per operation and table)."""
        return f"{PREFIX}_{self.op}"

    @property
    def fingerprint(self) -> str:
        """A digest of the DDL: equal digests, equal triggers."""
        ddl = self.create_function + self.create_trigger
        return hashlib.sha256(ddl.encode()).hexdigest()[:16]

    def comment(self, table: str) -> str:
        """What the installed function carries for ``check`` (JSON)."""
        body = hashlib.sha256(self.body.encode()).hexdigest()[:16]
        return json.dumps(
            {"table": table, "columns": list(self.columns), "ddl": self.fingerprint, "body": body}
        )


@dataclass(frozen=True)
class TableTriggers:
    """A bound table's capture triggers."""

    schema: str | None
    table: str
    model: str
    triggers: tuple[TriggerSQL, ...]

    @property
    def qualified(self) -> str:
        """``schema.table``, quoted where needed."""
        return qualified(self.schema, self.table)

    @property
    def label(self) -> str:
        """``schema.table`` (``table`` in the default schema), for messages."""
        return f"{self.schema}.{self.table}" if self.schema else self.table


@functools.lru_cache(maxsize=16)
def table_triggers(binding: Binding, outbox_schema: str | None = None) -> list[TableTriggers]:
    """The capture triggers of every table of ``binding``, functions in ``outbox_schema``
    (computed once per binding and schema: install tries again many times a second).

    Raises :class:`TriggerError` naming the model and attribute where a rule reads
    something that is not a plain column of the model's one table.
    """
    seen: dict[str, str] = {}
    result = []
    for model, rule in binding.rules.items():
        table = _table_of(model)
        label = _label(table)
        if label in seen:
            raise TriggerError(
                f"{model.__name__} and {seen[label]} share the table {label}: "
                "triggers cannot tell their rows apart (use the session listeners)"
            )
        seen[label] = model.__name__
        result.append(_Generator(binding, model, rule, table, outbox_schema).build())
    return result


def _table_of(model: type[Any]) -> Table:
    mapper = inspect(model)
    table = mapper.local_table
    if len(mapper.tables) != 1 or not isinstance(table, Table):
        raise TriggerError(
            f"{model.__name__} maps {len(mapper.tables)} tables or a query, not one table: "
            "triggers cannot be generated for it (use the session listeners)"
        )
    return table


def _column_of(model: type[Any], attribute: str) -> Column[Any]:
    """The one table column behind a model's attribute, or :class:`TriggerError`."""
    prop = inspect(model).attrs.get(attribute)
    columns: list[Any] = list(getattr(prop, "columns", ()))
    if len(columns) != 1 or not isinstance(columns[0], Column) or columns[0].table is None:
        raise TriggerError(
            f"{model.__name__}.{attribute} is not a column of its table (a computed "
            "attribute): triggers cannot watch it (use the session listeners)"
        )
    column: Column[Any] = columns[0]
    return column


def _label(table: Table) -> str:
    return f"{table.schema}.{table.name}" if table.schema else table.name


def qualified(schema: str | None, name: str) -> str:
    return f"{_quote(schema)}.{_quote(name)}" if schema else _quote(name)


def _function_name(table: str, op: str) -> str:
    name = f"{PREFIX}_{table}_{op}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(table.encode()).hexdigest()[:8]
    return f"{PREFIX}_{table[: 63 - len(PREFIX) - len(op) - 11]}_{digest}_{op}"


class _Generator:
    """The SQL of one table's rule."""

    def __init__(
        self,
        binding: Binding,
        model: type[Any],
        rule: Rule,
        table: Table,
        outbox_schema: str | None,
    ) -> None:
        self.b, self.model, self.rule, self.table = binding, model, rule, table
        self.outbox = qualified(outbox_schema, outbox.name)
        self.channel_map = qualified(outbox_schema, channel_map.name)
        self.schema = outbox_schema
        self.read: dict[str, None] = {}  # "table.column" of every column read, in order

    def col(self, attribute: str) -> str:
        column = _column_of(self.model, attribute)
        self.read[f"{_label(self.table)}.{column.name}"] = None
        return _quote(column.name)

    def build(self) -> TableTriggers:
        ops = ["update", "delete"]
        if self.rule.kind != EVENT_KIND:  # nothing refers to a new event yet
            ops = ["insert", *ops]
        if self.rule.read is not None:
            ops.append("read")
        triggers = tuple(self._trigger(op) for op in ops)
        return TableTriggers(self.table.schema, self.table.name, self.model.__name__, triggers)

    # -- rows of the rule's own targets ---------------------------------------------------

    def _payload(self, row: str) -> str:
        items = list(
            zip(self.rule.payload_keys or self.rule.payload, self.rule.payload, strict=True)
        )
        if not items:
            return "'{}'::jsonb"
        parts = []
        for key, attribute in items:
            column = _column_of(self.model, attribute)
            value = f"{row}.{self.col(attribute)}"
            try:
                as_is = column.type.python_type in _AS_IS
            except NotImplementedError:
                as_is = False
            parts.append(f"'{key}', to_jsonb({value if as_is else value + '::text'})")
        return f"jsonb_build_object({', '.join(parts)})"

    def _own(self, n: int, row: str, event: str, source: str = "") -> str:
        """The rule's target of each row of ``source`` (or of the record ``row``)."""
        key = f"{row}.{self.col(self.rule.key)}"
        select = (
            f"SELECT {n} AS n, '{self.rule.kind}'::text AS kind, {key}::text AS id, "
            f"{event}::text AS event, {self._payload(row)} AS payload"
        )
        return f"{select} FROM {source} {row}" if source else select

    # -- targets found through other tables (app_hooks.capture._Capture.expand) -----------

    def _expansions(self, ids: str, event: str) -> list[str]:
        if self.rule.kind == EVENT_KIND:
            return [self._conversations(self._of_events(ids))]
        if self.rule.kind == TargetKind.USER.value and self.rule.owns_target:
            # a deletion or restore of a user: the channels of what goes with it
            where = f"{event} IN ('delete', 'restore')"
            return [self._conversations(self._of_deleted_users(ids), where)]
        return []

    def _conversations(self, query: str, where: str = "TRUE") -> str:
        return (
            "SELECT 3, 'conversation', c.id::text, 'update', '{}'::jsonb "
            f"FROM ({query}) c(id) WHERE c.id IS NOT NULL AND {where}"
        )

    def _role(self, role: str, name: str) -> tuple[str, str]:
        model = self.b.model_for(role)
        attribute = self.b.attribute_name(role, name)
        assert attribute is not None  # ids and keys are never optional
        column = _column_of(model, attribute)
        table = _table_of(model)
        self.read[f"{_label(table)}.{column.name}"] = None
        return qualified(table.schema, table.name), _quote(column.name)

    def _select(self, role: str, name: str, where: str, values: str) -> str:
        table, column = self._role(role, name)
        _, key = self._role(role, where)
        return f"SELECT {column} FROM {table} WHERE {key} IN ({values})"

    def _of_events(self, ids: str) -> str:
        return " UNION ".join(
            self._select(role, "conversation_id", "event_id", ids)
            for role in ("invitation", "proposal")
        )

    def _of_deleted_users(self, ids: str) -> str:
        organized = self._select("event", "id", "organizer_id", ids)
        return " UNION ".join(
            [
                self._select("participant", "conversation_id", "user_id", ids),
                self._select_either("invitation", "user_id", ids, organized),
                self._select_either("proposal", "proposer_id", ids, organized),
            ]
        )

    def _select_either(self, role: str, user: str, ids: str, organized: str) -> str:
        table, column = self._role(role, "conversation_id")
        _, by_user = self._role(role, user)
        _, event = self._role(role, "event_id")
        return (
            f"SELECT {column} FROM {table} WHERE {by_user} IN ({ids}) OR {event} IN ({organized})"
        )

    # -- the statement that writes ---------------------------------------------------------

    def _write(self, rows: list[str]) -> str:
        """PL/pgSQL writing the changes of ``rows`` (a conversation's delete carries the
        channel the map holds)."""
        if self.rule.kind != TargetKind.CONVERSATION.value:
            return write_rows(self.outbox, rows)
        channel = (
            "SELECT jsonb_build_object('channel_type', m.channel_type, 'channel_id', "
            f"m.channel_id) FROM {self.channel_map} m WHERE m.conversation_id = g.id"
        )
        payload = (
            "CASE WHEN g.event = 'delete' THEN g.payload || "
            f"coalesce(({channel}), '{{}}'::jsonb) ELSE g.payload END"
        )
        return write_rows(self.outbox, rows, payload)

    def _trigger(self, op: str) -> TriggerSQL:
        self.read = {}
        rule = self.rule
        declare = ARRAYS
        if op == "insert":
            key = f"r.{self.col(rule.key)}"
            payload = self._payload("r") if rule.payload else None
            body = insert_rows(self.outbox, rule.kind, key, payload)
        elif op == "read":
            assert rule.reader is not None
            body = read_row(
                self.outbox, rule.kind, f"NEW.{self.col(rule.key)}", f"NEW.{self.col(rule.reader)}"
            )
            declare = ""
        elif op == "delete":
            event = f"'{rule.delete_event()}'"
            ids = f"SELECT r.{self.col(rule.key)} FROM {OLD_ROWS} r"
            own = [] if rule.kind == EVENT_KIND else [self._own(1, "r", event, OLD_ROWS)]
            body = self._write(own + self._expansions(ids, event))
        else:
            body = self._update_body()
            declare = "    _so_ev text := 'update';\n" + ARRAYS
        # Messages the database itself changes (a conversation's delete cascading to them,
        # a sender's delete setting theirs to NULL) go with their channel or user, as the
        # listeners, which never see them, leave them.
        cascades = rule.kind == TargetKind.MESSAGE.value
        source = function_source(body, declare, skip_cascades=cascades)
        function = _function_name(self.table.name, op)
        name = qualified(self.schema, function)
        create_function = (
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $fn${source}$fn$"
        )
        create_trigger = self._create_trigger(op, name)
        return TriggerSQL(op, function, source, create_function, create_trigger, tuple(self.read))

    def _update_body(self) -> str:
        rule = self.rule
        mark = ""
        if rule.deleted is not None:
            m = self.col(rule.deleted)
            mark = (
                f"IF (OLD.{m} IS NULL) <> (NEW.{m} IS NULL) THEN\n"
                f"        _so_ev := CASE WHEN OLD.{m} IS NULL THEN 'delete' ELSE 'restore' END;\n"
                "    END IF;\n    "
            )
        key = self.col(rule.key)
        ids = f"OLD.{key}, NEW.{key}"
        own = (
            []
            if rule.kind == EVENT_KIND
            else [
                self._own(1, "OLD", "_so_ev"),
                self._own(2, "NEW", "_so_ev"),
            ]
        )
        return mark + self._write(own + self._expansions(ids, "_so_ev"))

    def _create_trigger(self, op: str, function: str) -> str:
        table = qualified(self.table.schema, self.table.name)
        name = _quote(f"{PREFIX}_{op}")
        if op == "read":
            assert self.rule.read is not None
            read = self.col(self.rule.read)
            return (
                f"CREATE TRIGGER {name} AFTER UPDATE OF {read} ON {table} FOR EACH ROW "
                f"WHEN (NEW.{read} IS NOT NULL AND OLD.{read} IS DISTINCT FROM NEW.{read}) "
                f"EXECUTE FUNCTION {function}()"
            )
        if op == "update":
            watched = [self.col(name) for name in sorted(self.rule.watched)]
            changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in watched)
            return (
                f"CREATE TRIGGER {name} AFTER UPDATE OF {', '.join(watched)} ON {table} "
                f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION {function}()"
            )
        transition = f"NEW TABLE AS {NEW_ROWS}" if op == "insert" else f"OLD TABLE AS {OLD_ROWS}"
        return (
            f"CREATE TRIGGER {name} AFTER {op.upper()} ON {table} "
            f"REFERENCING {transition} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
