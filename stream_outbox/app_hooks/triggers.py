"""Install, drop and check the capture triggers (``app_hooks.trigger_sql``) on a connection.

Each function runs on the caller's connection and transaction, so an app's own
Alembic migration can install them beside its schema change::

    from alembic import op
    from stream_outbox.app_hooks.triggers import install_triggers
    from myapp.chat_binding import binding

    def upgrade() -> None:
        ...  # the app's own change (a renamed column, say)
        install_triggers(op.get_bind(), binding)

``stream-outbox triggers install | drop | check`` call them in one transaction each.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.outbox import outbox
from stream_outbox.app_hooks.trigger_sql import (
    PREFIX,
    TableTriggers,
    TriggerError,
    qualified,
    table_triggers,
)

__all__ = [
    "Installed",
    "TriggerError",
    "check_triggers",
    "drop_triggers",
    "install_triggers",
    "installed_triggers",
    "triggers_installed",
]

_LIKE = PREFIX.replace("_", r"\_") + r"\_%"
_INSTALLED = text(
    """
    SELECT tn.nspname AS schema, c.relname AS "table", t.tgname AS trigger,
           fn.nspname AS function_schema, p.proname AS function, p.prosrc AS source,
           obj_description(p.oid, 'pg_proc') AS comment
    FROM pg_trigger t
    JOIN pg_class c ON c.oid = t.tgrelid
    JOIN pg_namespace tn ON tn.oid = c.relnamespace
    JOIN pg_proc p ON p.oid = t.tgfoid
    JOIN pg_namespace fn ON fn.oid = p.pronamespace
    WHERE t.tgname LIKE :like AND NOT t.tgisinternal
    ORDER BY c.relname, t.tgname
    """
).bindparams(like=_LIKE)
_ORPHANS = text(
    """
    SELECT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE p.proname LIKE :like AND p.prorettype = 'trigger'::regtype
      AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgfoid = p.oid)
    """
).bindparams(like=_LIKE)


@dataclass(frozen=True)
class Installed:
    """A capture trigger found in the database, with what its function's comment says."""

    schema: str
    table: str
    trigger: str
    function_schema: str
    function: str
    source: str
    comment: dict[str, Any]

    @property
    def label(self) -> str:
        """``table`` in the default schema, else ``schema.table`` (as bindings name them)."""
        return self.table if self.schema == "public" else f"{self.schema}.{self.table}"


def installed_triggers(conn: Connection) -> list[Installed]:
    """The capture triggers installed in the database."""
    found = []
    for row in conn.execute(_INSTALLED).mappings():
        try:
            comment = json.loads(row["comment"] or "{}")
        except ValueError:
            comment = {}
        found.append(Installed(**{**row, "comment": comment}))
    return found


def triggers_installed(conn: Connection) -> bool:
    """Whether any capture trigger is installed (the listeners then stand by)."""
    query = text("SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname LIKE :like)")
    return bool(conn.execute(query.bindparams(like=_LIKE)).scalar())


def install_triggers(
    conn: Connection, binding: Binding, *, nowait: bool = False
) -> list[TableTriggers]:
    """Replace the installed capture triggers with the ones ``binding`` calls for.

    Needs the outbox at migration 0004 or later (``capture_tx``); raises
    :class:`TriggerError` in one line where the binding cannot be expressed in SQL
    or the outbox is older. Nothing is left half-installed when the caller's
    transaction rolls back. Every table's lock is taken first, in one statement;
    with ``nowait`` none is waited for (``LockNotAvailable``: try again), so an app
    transaction never waits behind the change, nor deadlocks with it.
    """
    schema = _outbox_schema(conn)
    tables = table_triggers(binding, schema)
    _lock(conn, [table.qualified for table in tables], nowait)
    drop_triggers(conn, nowait=nowait)
    for table in tables:
        for trigger in table.triggers:
            conn.exec_driver_sql(trigger.create_function)
            function = f"{qualified(schema, trigger.function)}()"
            comment = trigger.comment(table.label).replace("'", "''")
            conn.exec_driver_sql(f"COMMENT ON FUNCTION {function} IS '{comment}'")
            conn.exec_driver_sql(trigger.create_trigger)
    return tables


def drop_triggers(conn: Connection, *, nowait: bool = False) -> int:
    """Drop every capture trigger and its function; returns how many triggers there were
    (``nowait``: as for :func:`install_triggers`)."""
    installed = installed_triggers(conn)
    _lock(conn, [qualified(found.schema, found.table) for found in installed], nowait)
    for found in installed:
        table = qualified(found.schema, found.table)
        conn.exec_driver_sql(f"DROP TRIGGER {qualified(None, found.trigger)} ON {table}")
    functions = {(found.function_schema, found.function) for found in installed}
    functions |= {(row[0], row[1]) for row in conn.execute(_ORPHANS)}
    for schema, name in sorted(functions):
        conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {qualified(schema, name)}()")
    return len(installed)


def _lock(conn: Connection, tables: list[str], nowait: bool) -> None:
    """Take every table's trigger lock first, in one statement: an app transaction sees
    all the triggers or none."""
    if tables:
        names = ", ".join(dict.fromkeys(tables))
        wait = " NOWAIT" if nowait else ""
        conn.exec_driver_sql(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE{wait}")


def check_triggers(conn: Connection, binding: Binding) -> list[str]:
    """Drift between the installed capture triggers and ``binding``, one line each.

    Empty when they match. Names the table and column where an installed trigger
    reads a column the table no longer has (the app's migration renamed it), a
    trigger missing, extra, generated from another binding or by another version of
    stream-outbox (install again after an upgrade), or edited by hand.
    """
    installed = {(found.label, found.trigger): found for found in installed_triggers(conn)}
    if not installed:
        return ["no capture triggers are installed: run `stream-outbox triggers install`"]
    try:
        tables = table_triggers(binding, _outbox_schema(conn))
    except TriggerError as exc:
        return [str(exc)]
    drift = _missing_columns(conn, installed.values())
    expected = {(t.label, trigger.trigger): trigger for t in tables for trigger in t.triggers}
    for key in sorted(expected.keys() - installed.keys()):
        drift.append(f"{key[0]}: {key[1]} is not installed")
    for key in sorted(installed.keys() - expected.keys()):
        drift.append(f"{key[0]}: {key[1]} is installed, but the binding has no rule for it")
    for key in sorted(expected.keys() & installed.keys()):
        found, trigger = installed[key], expected[key]
        body = hashlib.sha256(found.source.encode()).hexdigest()[:16]
        if body != found.comment.get("body"):
            drift.append(f"{key[0]}: {key[1]}'s function {found.function} was edited by hand")
        elif trigger.fingerprint != found.comment.get("ddl"):
            diff = _columns_diff(found, trigger.columns)
            drift.append(
                f"{key[0]}: {key[1]} differs from the binding{diff}"
                if diff
                else f"{key[0]}: {key[1]} differs from what the binding and this version of "
                "stream-outbox generate: run `stream-outbox triggers install`"
            )
    return drift


def _missing_columns(conn: Connection, installed: Any) -> list[str]:
    """Columns the installed functions read that their tables no longer have."""
    read = sorted({column for found in installed for column in found.comment.get("columns", [])})
    if not read:
        return []
    present = {
        f"{table}.{column}" if schema == "public" else f"{schema}.{table}.{column}"
        for schema, table, column in conn.execute(
            text(
                "SELECT table_schema, table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = ANY(current_schemas(false))"
            )
        )
    }
    return [
        f"{column}: read by the capture triggers, but the table has no such column "
        "(renamed or dropped?); update the binding and run `stream-outbox triggers install`"
        for column in read
        if column not in present
    ]


def _columns_diff(found: Installed, expected: tuple[str, ...]) -> str:
    before, now = set(found.comment.get("columns", [])), set(expected)
    parts = []
    if before - now:
        parts.append(f"it reads {', '.join(sorted(before - now))}")
    if now - before:
        parts.append(f"the binding reads {', '.join(sorted(now - before))}")
    return f" ({'; '.join(parts)})" if parts else ""


def _outbox_schema(conn: Connection) -> str:
    """The outbox table's schema; :class:`TriggerError` when it lacks ``capture_tx``."""
    row = conn.execute(
        text(
            "SELECT n.nspname, EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid "
            "AND a.attname = 'capture_tx' AND NOT a.attisdropped) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass(:name)"
        ),
        {"name": outbox.name},
    ).first()
    if row is None or not row[1]:
        raise TriggerError(
            f"{outbox.name} {'is missing' if row is None else 'has no capture_tx column'}: "
            "run `stream-outbox migrate` first"
        )
    return str(row[0])
