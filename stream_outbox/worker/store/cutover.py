"""The cut-over to Stream's import: the history watermark, and whether its import is done.

``stream-outbox history export`` records the cut-over in the audit table *before* it
reads anything (:func:`begin_export`): its watermark and ``since``, the database's time
just before the export's snapshot. ``stream-outbox history import`` records each file's
import task there, and once every file is imported, completes the cut-over
(:func:`complete_import`). From those records every worker knows where the history
ends and the live mirror begins:

- a message created after the watermark is the live mirror's to send;
- a message created at or before it is in the import files: the mirror sends none of
  them, and edits or deletes them only once the import is complete (until then, an
  import applied later would undo the edit or bring the deleted message back).

Everything else the files carry (users, channels, their data and members) the mirror
keeps in step meanwhile, and the import then writes the snapshot over it. So the
import's completion is level-triggered: in the transaction that records it, every
target whose outbox rows were worked on since ``since``, or are still open, gets a
``reconcile`` row, and its job makes Stream hold what the database holds then. No list
of cases: a rename, a member removed or added, a conversation deleted or restored, a
user deleted, an edit, all are targets with rows. Messages written since are left
out (the bulk of the rows, and a call each): one created after the watermark is in no
file, and one at or before it waits for the import. The same transaction marks the
export's channels as in Stream (the channel map's ``in_stream_at``).

A resumed export keeps its first run's entry, ``since`` and all.

The state is read from the audit table at most every few seconds per process.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePath
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, text

from stream_outbox.app_hooks.outbox import EXPORT_ACTION, Status, audit, outbox
from stream_outbox.worker.store import audit as audit_entries
from stream_outbox.worker.store.channel_map import ChannelMap

__all__ = [
    "EXPORT_ACTION",
    "IMPORT_ACTION",
    "RECHECK_AFTER",
    "RECHECK_MAX",
    "RECONCILE_EVENT",
    "Cutover",
    "begin_export",
    "complete_import",
    "current_cutover",
    "finish_export",
    "forget_cutover",
    "read_cutover",
    "recheck_later",
    "utc",
]

IMPORT_ACTION = "history_import"
COMPLETED = "completed"
RECONCILE_EVENT = "reconcile"
# How long a message waiting for the Stream import waits before it is looked at again
RECHECK_AFTER = timedelta(seconds=30)
RECHECK_MAX = timedelta(minutes=10)
_TTL = 5.0


def utc(moment: datetime) -> datetime:
    """An aware time (a naive one taken as UTC), in UTC."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass(frozen=True)
class Cutover:
    """The latest history export's watermark, and whether its import is complete;
    ``export_id`` is its audit entry, ``since`` the time just before its snapshot
    (None for an export recorded by an older release, after it ran)."""

    watermark: datetime
    imported: bool
    export_id: int = 0
    since: datetime | None = None

    def carries(self, exported_in: int | None) -> bool:
        """Whether this export's files carry a channel exported in ``exported_in``."""
        return exported_in is not None and exported_in == self.export_id

    def covers(self, created_at: datetime | None) -> bool:
        """Whether a message created then is in the import files (at or before the watermark)."""
        return created_at is not None and utc(created_at) <= self.watermark


def _time(value: Any) -> datetime:
    return utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def read_cutover(conn: Connection) -> Cutover | None:
    """The cut-over the audit table records, or None when no history was ever exported.

    The import is complete once :func:`complete_import` recorded it (an export recorded
    by an older release: when every file of it has a completed import task recorded
    after it).
    """
    export = audit_entries.latest(conn, EXPORT_ACTION)
    if export is None:
        return None
    detail: dict[str, Any] = export.detail
    watermark = _time(detail["watermark"])
    if "since" in detail:
        since = _time(detail["since"])
        return Cutover(watermark, "imported_at" in detail, export.id, since)
    return Cutover(watermark, _all_imported(conn, export), export.id)


def _all_imported(conn: Connection, export: audit_entries.Entry) -> bool:
    """Whether every file of the export has a completed import task recorded after it."""
    files = {PurePath(str(path)).name for path in export.detail.get("files", [])}
    imports = conn.execute(
        select(audit.c.detail).where(audit.c.action == IMPORT_ACTION, audit.c.id > export.id)
    ).scalars()
    done = {str(d.get("file")) for d in imports if (d or {}).get("state") == COMPLETED}
    return bool(files) and files <= done


_CUTOVER_LOCK = "stream_outbox:cutover"


def _lock(conn: Connection) -> None:
    """One cut-over change at a time (two exports, or an export and an import)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(_CUTOVER_LOCK, 0))))


def begin_export(engine: Engine, *, watermark: str, folder: str, actor: str) -> Cutover:
    """Record the cut-over before the export reads anything (it takes its snapshot after
    this commits): from now on the import is pending. An export resumed in the same
    folder, up to the same watermark, whose import is not complete keeps its entry."""
    with engine.begin() as conn:
        _lock(conn)
        latest = audit_entries.latest(conn, EXPORT_ACTION)
        if latest is not None:
            detail = latest.detail
            resumed = detail.get("folder") == folder and detail.get("watermark") == watermark
            if resumed and "since" in detail and "imported_at" not in detail:
                return Cutover(_time(watermark), False, latest.id, _time(detail["since"]))
        since = conn.execute(select(func.now())).scalar_one()
        detail = {
            "watermark": watermark,
            "since": since.isoformat(),
            "folder": folder,
            "state": "exporting",
            "files": [],
        }
        export_id = audit_entries.write(
            conn, actor=actor, action=EXPORT_ACTION, count=0, detail=detail
        )
    forget_cutover()
    return Cutover(_time(watermark), False, export_id, utc(since))


def finish_export(engine: Engine, export_id: int, detail: dict[str, Any], count: int) -> None:
    """Record the export's files and counts in its entry (the import completes it)."""
    with engine.begin() as conn:
        _lock(conn)
        entry = conn.execute(select(audit.c.detail).where(audit.c.id == export_id)).scalar_one()
        audit_entries.update_entry(
            conn, export_id, detail={**entry, **detail, "state": "exported"}, count=count
        )


_RECONCILE = text(
    f"""
    INSERT INTO {outbox.name} (target_kind, target_id, event, payload)
    SELECT target_kind, target_id, :event,
           payload - 'history' - 'rechecks' - 'edit'
    FROM (
        SELECT DISTINCT ON (target_kind, target_id) target_kind, target_id, payload
        FROM {outbox.name}
        WHERE (updated_at >= :since OR status IN (:pending, :dispatched))
          AND (target_kind <> 'message' OR event <> 'insert')
        ORDER BY target_kind, target_id, id DESC
    ) AS touched
    """
)


def complete_import(engine: Engine) -> int | None:
    """Complete the latest export's cut-over once every one of its files is imported:
    its channels are in Stream, and every target worked on since its snapshot (or still
    waiting) is reconciled again, in the transaction that records it. Returns how many
    targets, or None when there is nothing to complete (not all imported, or done)."""
    with engine.begin() as conn:
        _lock(conn)
        export = audit_entries.latest(conn, EXPORT_ACTION)
        if export is None or "since" not in export.detail or "imported_at" in export.detail:
            return None
        if not _all_imported(conn, export):
            return None
        ChannelMap.mark_imported(conn, export.id)
        params = {
            "event": RECONCILE_EVENT,
            "since": _time(export.detail["since"]),
            "pending": Status.PENDING.value,
            "dispatched": Status.DISPATCHED.value,
        }
        targets = int(conn.execute(_RECONCILE, params).rowcount or 0)
        now = conn.execute(select(func.now())).scalar_one()
        detail = {**export.detail, "imported_at": now.isoformat(), "reconciled": targets}
        audit_entries.update_entry(conn, export.id, detail=detail)
    forget_cutover()
    return targets


_cache: weakref.WeakKeyDictionary[Engine, tuple[float, Cutover | None]] = (
    weakref.WeakKeyDictionary()
)
_cache_lock = threading.Lock()


def current_cutover(engine: Engine, *, fresh: bool = False) -> Cutover | None:
    """:func:`read_cutover`, read again at most every few seconds for an engine (at once
    with ``fresh``: a decision to wait for an import that may have completed since)."""
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(engine)
    if cached is not None and now - cached[0] < _TTL and not fresh:
        return cached[1]
    with engine.connect() as conn:
        found = read_cutover(conn)
    with _cache_lock:
        _cache[engine] = (now, found)
    return found


def forget_cutover() -> None:
    """Drop the cached state (tests, and a process that just recorded a new one)."""
    with _cache_lock:
        _cache.clear()


def recheck_later(
    engine: Engine, kind: str, target_id: str, payload: dict[str, Any], after: timedelta
) -> None:
    """Write a row that brings the target back ``after`` from now (a job that must wait
    settles its own row; this one keeps the change from being lost meanwhile)."""
    with engine.begin() as conn:
        conn.execute(
            insert(outbox).values(
                target_kind=kind,
                target_id=target_id,
                event="recheck",
                payload=payload,
                available_at=datetime.now(UTC) + after,
            )
        )
