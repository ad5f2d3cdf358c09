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
from stream_outbox.worker.store.channel_map import ChannelMap, ChannelRef

__all__ = [
    "EXPORT_ACTION",
    "IMPORT_ACTION",
    "RECHECK_AFTER",
    "RECHECK_MAX",
    "RECONCILE_EVENT",
    "Cutover",
    "abandon_export",
    "begin_export",
    "complete_import",
    "current_cutover",
    "finish_export",
    "forget_cutover",
    "read_cutover",
    "recheck_later",
    "recorded_export",
    "utc",
    "wait_for_import",
]

IMPORT_ACTION = "history_import"
COMPLETED = "completed"
EXPORTING, EXPORTED = "exporting", "exported"
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
    (None for an export recorded by an older release, after it ran); ``exporting``: the
    export is still writing its files (which conversations it carries is not known
    yet)."""

    watermark: datetime
    imported: bool
    export_id: int = 0
    since: datetime | None = None
    exporting: bool = False

    def carries(self, exported_in: int | None) -> bool:
        """Whether this export's files carry a channel exported in ``exported_in``."""
        return exported_in is not None and exported_in == self.export_id

    @property
    def pending(self) -> bool:
        """Whether the import is still to complete."""
        return not self.imported

    def brings(self, ref: ChannelRef | None) -> bool:
        """Whether a channel's conversation waits for this pending import: the import
        creates the channel (carried, not in Stream yet), holds its messages under the ids
        of this deleted generation (the next one would get them), or, while the export
        runs, might be either (which conversations it carries is not known yet). A
        channel Stream holds never waits: it is kept in step, and reconciled again."""
        if self.imported or (ref is not None and ref.in_stream and not ref.deleted):
            return False
        return self.exporting or (ref is not None and self.carries(ref.exported_in))

    def imports_messages_of(self, ref: ChannelRef | None) -> bool:
        """Whether the import carries a channel's messages: generation 0 (ids ``msg-``) of
        a channel this export carried; an export recorded by an older release marked
        none, and carried every channel."""
        if ref is not None and ref.generation:
            return False
        return self.since is None or (ref is not None and self.carries(ref.exported_in))

    def covers(self, created_at: datetime | None) -> bool:
        """Whether a message created then is in the import files (at or before the watermark)."""
        return created_at is not None and utc(created_at) <= self.watermark


def _time(value: Any) -> datetime:
    return utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def _current_export(conn: Connection) -> audit_entries.Entry | None:
    """The latest export not abandoned (``stream-outbox history abandon``)."""
    for entry in reversed(audit_entries.entries(conn, EXPORT_ACTION)):
        if "abandoned_at" not in entry.detail:
            return entry
    return None


def read_cutover(conn: Connection) -> Cutover | None:
    """The cut-over the audit table records, or None when no history was ever exported.

    The import is complete once :func:`complete_import` recorded it (an export recorded
    by an older release: when every file of it has a completed import task recorded
    after it). ``exporting``: the export is still running.
    """
    export = _current_export(conn)
    if export is None:
        return None
    detail: dict[str, Any] = export.detail
    watermark = _time(detail["watermark"])
    if "since" in detail:
        since = _time(detail["since"])
        exporting = detail.get("state") == EXPORTING
        return Cutover(watermark, "imported_at" in detail, export.id, since, exporting)
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


def recorded_export(conn: Connection, *, watermark: str, folder: str) -> Cutover | None:
    """The pending cut-over of an export into ``folder`` up to ``watermark``, if it is the
    current one (a resumed export keeps it)."""
    latest = _current_export(conn)
    if latest is None:
        return None
    detail = latest.detail
    same = detail.get("folder") == folder and detail.get("watermark") == watermark
    if not same or "since" not in detail or "imported_at" in detail:
        return None
    exporting = detail.get("state") == EXPORTING
    return Cutover(_time(watermark), False, latest.id, _time(detail["since"]), exporting)


def begin_export(engine: Engine, *, watermark: str, folder: str, actor: str) -> Cutover:
    """Record the cut-over before the export reads anything (it takes its snapshot after
    this commits): from now on the import is pending. An export resumed in the same
    folder, up to the same watermark, whose import is not complete keeps its entry; a new
    export after one whose import never completed keeps that one's ``since`` (what its
    files may have brought into Stream is reconciled too)."""
    with engine.begin() as conn:
        _lock(conn)
        resumed = recorded_export(conn, watermark=watermark, folder=folder)
        if resumed is not None:
            detail = {**_detail(conn, resumed.export_id), "state": EXPORTING}
            audit_entries.update_entry(conn, resumed.export_id, detail=detail)
            forget_cutover()
            return resumed
        since = conn.execute(select(func.now())).scalar_one()
        before = read_cutover(conn)
        if before is not None and not before.imported and before.since is not None:
            since = min(since, before.since)
        detail = {
            "watermark": watermark,
            "since": since.isoformat(),
            "folder": folder,
            "state": EXPORTING,
            "files": [],
        }
        export_id = audit_entries.write(
            conn, actor=actor, action=EXPORT_ACTION, count=0, detail=detail
        )
    forget_cutover()
    return Cutover(_time(watermark), False, export_id, utc(since), exporting=True)


def _detail(conn: Connection, export_id: int) -> dict[str, Any]:
    detail: dict[str, Any] = conn.execute(
        select(audit.c.detail).where(audit.c.id == export_id)
    ).scalar_one()
    return dict(detail)


def finish_export(engine: Engine, export_id: int, detail: dict[str, Any], count: int) -> None:
    """Record the export's files and counts in its entry (the import completes it)."""
    with engine.begin() as conn:
        _lock(conn)
        entry = _detail(conn, export_id)
        audit_entries.update_entry(
            conn, export_id, detail={**entry, **detail, "state": EXPORTED}, count=count
        )
    forget_cutover()


def abandon_export(engine: Engine, *, actor: str) -> Cutover | None:
    """Give up the current export whose import is not complete (a failed or unwanted
    one): the cut-over falls back to the export before it, if any. Returns the one given
    up (None: nothing to give up)."""
    with engine.begin() as conn:
        _lock(conn)
        current = read_cutover(conn)
        if current is None or current.imported:
            return None
        now = conn.execute(select(func.now())).scalar_one()
        detail = {**_detail(conn, current.export_id), "abandoned_at": now.isoformat()}
        audit_entries.update_entry(conn, current.export_id, detail=detail)
        audit_entries.write(
            conn,
            actor=actor,
            action="history_abandon",
            count=0,
            detail={"export": current.export_id},
        )
    forget_cutover()
    return current


# The targets worked on since the snapshot, done or in flight (an open row of a target
# runs anyway: the waiting ones come due below), each with its newest row's payload
# (its legacy flag from any), new messages left out (the import cannot undo them).
_RECONCILE = text(
    f"""
    INSERT INTO {outbox.name} (target_kind, target_id, event, payload)
    SELECT target_kind, target_id, :event,
           CASE WHEN jsonb_typeof(payload) = 'object'
                THEN payload - 'history' - 'rechecks' - 'edit' ELSE '{{}}'::jsonb END
           || CASE WHEN legacy THEN '{{"legacy": true}}'::jsonb ELSE '{{}}'::jsonb END
    FROM (
        SELECT DISTINCT ON (target_kind, target_id) target_kind, target_id, payload,
               bool_or(jsonb_typeof(payload) = 'object' AND payload->>'legacy' = 'true')
                   OVER (PARTITION BY target_kind, target_id) AS legacy
        FROM {outbox.name}
        WHERE (updated_at >= :since OR status = :dispatched)
          AND (target_kind <> 'message' OR event <> 'insert')
        ORDER BY target_kind, target_id, id DESC
    ) AS touched
    WHERE NOT EXISTS (
        SELECT 1 FROM {outbox.name} AS open
        WHERE open.target_kind = touched.target_kind
          AND open.target_id = touched.target_id
          AND open.status = :pending
    )
    """
)

# What waits for the import comes due now.
_DUE = text(
    f"""
    UPDATE {outbox.name} SET available_at = now()
    WHERE status = :pending AND event = 'recheck' AND available_at > now()
    """
)


def complete_import(engine: Engine) -> int | None:
    """Complete the current export's cut-over once every one of its files is imported:
    its channels are in Stream, what waits for the import comes due, and every target
    worked on since its snapshot is reconciled again, in the transaction that records
    it. Returns how many targets, or None when there is nothing to complete."""
    with engine.begin() as conn:
        _lock(conn)
        export = _current_export(conn)
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
        conn.execute(_DUE, {"pending": Status.PENDING.value})
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


def wait_for_import(
    engine: Engine, kind: str, target_id: str, payload: dict[str, Any] | None
) -> timedelta:
    """Bring a target that waits for the import back later, in a row of its own: twice as
    late each time, up to 10 minutes (an import can take hours; a look costs a database
    read). The import's completion brings every such row forward."""
    looks = int((payload or {}).get("rechecks", 0))
    after: timedelta = min(RECHECK_AFTER * 2**looks, RECHECK_MAX)
    recheck_later(engine, kind, target_id, {**(payload or {}), "rechecks": looks + 1}, after)
    return after


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
