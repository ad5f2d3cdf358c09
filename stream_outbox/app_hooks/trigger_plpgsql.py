"""PL/pgSQL of the capture triggers: the templates ``app_hooks.trigger_sql`` fills in (pure).

Their variables start with ``_so_``, a name no app column is likely to share (PL/pgSQL
refuses a query where a variable and a column have the same name).

Two transaction-local settings carry state between firings: the mark that tells the
session listeners to stand by, and the targets this transaction's triggers wrote
(``written``, up to ``WRITTEN_MAX`` characters), so that a statement that adds nothing
to them (the second participant of a new conversation, its invitation) writes no
statement at all: one small query over its transition table, and back.
"""

from __future__ import annotations

from stream_outbox.app_hooks.changes import READ_EVENT, READS_KEY
from stream_outbox.app_hooks.outbox import NOTIFY_CHANNEL

__all__ = [
    "ARRAYS",
    "MARK_SETTING",
    "MARK_VALUE",
    "NEW_ROWS",
    "OLD_ROWS",
    "ORIGIN_SETTING",
    "ORIGIN_STREAM",
    "WRITTEN_MAX",
    "WRITTEN_SETTING",
    "function_source",
    "insert_rows",
    "not_written",
    "read_row",
    "write_rows",
]

# A transaction that writes what came from Stream (the inbound applier) sets this to
# ``ORIGIN_STREAM`` (``SET LOCAL``): the triggers write no outbox row for its changes,
# which Stream holds already (no echo).
ORIGIN_SETTING = "stream_outbox.origin"
ORIGIN_STREAM = "stream"
MARK_SETTING = "stream_outbox.capture"
MARK_VALUE = "triggers"
WRITTEN_SETTING = "stream_outbox.written"
WRITTEN_MAX = 8192
_WRITTEN = f"coalesce(current_setting('{WRITTEN_SETTING}', true), '')"

_MERGE = """ON CONFLICT (target_kind, target_id, capture_tx)
        WHERE status = 'pending' AND capture_tx IS NOT NULL
    DO UPDATE SET event = CASE WHEN EXCLUDED.event = 'delete' THEN 'delete' ELSE o.event END,
                  payload = o.payload || EXCLUDED.payload
    WHERE (EXCLUDED.event = 'delete' AND o.event <> 'delete')
       OR NOT o.payload @> EXCLUDED.payload;"""
_COLUMNS = "(target_kind, target_id, event, payload, capture_tx)"
NEW_ROWS, OLD_ROWS = "stream_outbox_new", "stream_outbox_old"  # the transition tables
# The relay's wake-up, once a transaction (sent at COMMIT): the outbox's own statement
# trigger skips rows written from a trigger (migration 0004).
_NOTIFY = f"""IF _so_written = '' THEN
        PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
    END IF;"""


def _entry(kind: str, key: str) -> str:
    return f"chr(31) || {kind} || ':' || {key} || chr(31)"


def not_written(kind: str, key: str) -> str:
    """SQL: the target ``kind``:``key`` (text expressions) is not among those written."""
    return f"strpos(_so_written, {_entry(kind, key)}) = 0"


def function_source(body: str, declare: str = "", skip_cascades: bool = False) -> str:
    """A trigger function's body: mark the transaction, then ``body``; nothing at all in a
    transaction writing what came from Stream (:data:`ORIGIN_SETTING`).

    ``skip_cascades``: do nothing for rows the database changes itself through a
    foreign key (a message going with its conversation or sender).
    """
    skip = "IF pg_trigger_depth() > 1 THEN\n        RETURN NULL;\n    END IF;\n    "
    return f"""
DECLARE
{declare}    _so_written text := {_WRITTEN};
BEGIN
    IF current_setting('{ORIGIN_SETTING}', true) = '{ORIGIN_STREAM}' THEN
        RETURN NULL;
    END IF;
    IF current_setting('{MARK_SETTING}', true) IS DISTINCT FROM '{MARK_VALUE}' THEN
        PERFORM set_config('{MARK_SETTING}', '{MARK_VALUE}', true);
    END IF;
    {skip if skip_cascades else ""}{body}
    RETURN NULL;
END;
"""


def insert_rows(outbox: str, kind: str, key: str, payload: str | None) -> str:
    """PL/pgSQL: the changes of a statement's new rows (``key``, ``payload``: expressions
    of the transition table's row ``r``; ``payload`` ``None``: empty), one per target.

    The common statement, one new row, costs one small query, and nothing more when its
    target is written already (another participant of a new conversation). While
    ``written`` holds every target written (it is not full), a target not in it has no
    row yet: a plain ``INSERT``, without ``ON CONFLICT``'s speculative insertion.
    """
    fresh = not_written(f"'{kind}'", "t.id")
    if payload is None:
        select = f"""SELECT array_agg(DISTINCT {key}::text) INTO _so_ids FROM {NEW_ROWS} r
     WHERE {key} IS NOT NULL AND {not_written(f"'{kind}'", f"{key}::text")};"""
        payloads_sql, merge_sql = "array_fill('{}'::jsonb, ARRAY[cardinality(_so_ids)])", "false"
    else:  # a payload to merge (a message's conversation): written or not
        select = f"""SELECT array_agg(t.id), array_agg(t.payload), bool_or(NOT {fresh})
      INTO _so_ids, _so_payloads, _so_merge
      FROM (SELECT DISTINCT ON ({key}) {key}::text AS id, {payload} AS payload
              FROM {NEW_ROWS} r WHERE {key} IS NOT NULL) t;"""
        payloads_sql, merge_sql = "_so_payloads", "_so_merge"
    rows = f"""SELECT '{kind}', t.id, 'insert', t.payload, txid_current()
          FROM unnest(_so_ids, {payloads_sql}) AS t(id, payload)"""
    entries = f"chr(31) || '{kind}:' || array_to_string(_so_ids, chr(31) || '{kind}:') || chr(31)"
    return f"""{select}
    IF _so_ids IS NULL THEN
        RETURN NULL;  -- written already: no statement at all
    END IF;
    {_NOTIFY}
    IF length(_so_written) < {WRITTEN_MAX} AND NOT {merge_sql} THEN
        INSERT INTO {outbox} {_COLUMNS}
        {rows};
    ELSE
        INSERT INTO {outbox} AS o {_COLUMNS}
        {rows}
        {_MERGE}
    END IF;
    {_register(entries)}"""


def _register(entries: str) -> str:
    """PL/pgSQL: add ``entries`` (of ``ids``) to ``written`` while the result stays under
    ``WRITTEN_MAX`` characters; else (too many targets, as in a bulk load, or an id
    holding the separator) fill ``written`` instead: from then on every write merges.

    The entries are built only when so many could fit (each takes four characters at
    least), so a ``COPY`` of a million targets never builds them at all.
    """
    return f"""IF length(_so_written) < {WRITTEN_MAX} THEN
        _so_kept := NULL;
        IF cardinality(_so_ids) <= ({WRITTEN_MAX} - length(_so_written)) / 4 THEN
            IF strpos(array_to_string(_so_ids, ''), chr(31)) = 0 THEN
                _so_kept := _so_written || {entries};
            END IF;
        END IF;
        IF length(_so_kept) < {WRITTEN_MAX} THEN
            _so_written := _so_kept;
        ELSE
            _so_written := rpad(_so_written, {WRITTEN_MAX}, '~');
        END IF;
        PERFORM set_config('{WRITTEN_SETTING}', _so_written, true);
    END IF;"""


def write_rows(outbox: str, rows: list[str], payload: str = "g.payload") -> str:
    """PL/pgSQL: the changes of ``rows`` (``SELECT n, kind, id, event, payload``), one per
    target, written unless this transaction's row of the target has them already.

    ``payload``: the payload written, an expression of ``g`` (the merged change).
    """
    union = "\n        UNION ALL ".join(rows)
    entries = (
        f"(SELECT string_agg({_entry('t.kind', 't.id')}, '') "
        "FROM unnest(_so_kinds, _so_ids) t(kind, id))"
    )
    return f"""WITH v(n, kind, id, event, payload) AS (
        {union}
    ), g AS (
        SELECT kind, id,
               CASE WHEN bool_or(event = 'delete') THEN 'delete' ELSE min(event) END AS event,
               (array_agg(payload ORDER BY n))[1] AS payload
        FROM v WHERE id IS NOT NULL GROUP BY kind, id
    )
    SELECT array_agg(g.kind), array_agg(g.id), array_agg(g.event), array_agg({payload})
      INTO _so_kinds, _so_ids, _so_events, _so_payloads
      FROM g
     WHERE g.event = 'delete' OR g.payload <> '{{}}'::jsonb OR {not_written("g.kind", "g.id")};
    IF _so_kinds IS NULL THEN
        RETURN NULL;  -- this transaction's rows have it all: no statement at all
    END IF;
    {_NOTIFY}
    INSERT INTO {outbox} AS o {_COLUMNS}
    SELECT t.kind, t.id, t.event, t.payload, txid_current()
      FROM unnest(_so_kinds, _so_ids, _so_events, _so_payloads) AS t(kind, id, event, payload)
    {_MERGE}
    {_register(entries)}"""


def read_row(outbox: str, kind: str, key: str, reader: str) -> str:
    """PL/pgSQL: the ``read`` row of one participant whose read time changed (``key``:
    the target's id, ``reader``: who read; expressions of ``NEW``).

    A row of its own, outside the pending-row key (no ``capture_tx``): it neither merges
    into nor holds back the transaction's other rows of the target (whose membership
    change it must not hide), and the relay coalesces a target's rows into one job.
    """
    return f"""PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
    INSERT INTO {outbox} (target_kind, target_id, event, payload)
    VALUES ('{kind}', {key}::text, '{READ_EVENT}',
            jsonb_build_object('{READS_KEY}', jsonb_build_array({reader}::text)));"""


# The variables insert_rows and write_rows need, for function_source's declare.
ARRAYS = (
    "    _so_kinds text[];\n    _so_ids text[];\n    _so_events text[];\n"
    "    _so_payloads jsonb[];\n    _so_merge boolean;\n    _so_kept text;\n"
)
