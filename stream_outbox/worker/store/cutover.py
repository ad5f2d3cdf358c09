"""The cut-over to Stream's import: the history watermark, and whether its import is done.

``stream-outbox history export`` records its watermark (and its files) in the audit
table; ``stream-outbox history import`` records each file's import task there. From
those two records every worker knows where the history ends and the live mirror begins:

- a message created after the watermark is the live mirror's to send;
- a message created at or before it is in the import files: the mirror sends none of
  them, and edits or deletes them only once the import is complete (until then, an
  import applied later would undo the edit or bring the deleted message back).

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

from sqlalchemy import Connection, Engine, insert, select

from stream_outbox.app_hooks.outbox import audit, outbox
from stream_outbox.worker.store import audit as audit_entries

__all__ = [
    "EXPORT_ACTION",
    "IMPORT_ACTION",
    "RECHECK_AFTER",
    "RECHECK_MAX",
    "Cutover",
    "current_cutover",
    "forget_cutover",
    "read_cutover",
    "recheck_later",
    "utc",
]

EXPORT_ACTION = "history_export"
IMPORT_ACTION = "history_import"
COMPLETED = "completed"
# How long a message waiting for the Stream import waits before it is looked at again
RECHECK_AFTER = timedelta(seconds=30)
RECHECK_MAX = timedelta(minutes=10)
_TTL = 5.0


def utc(moment: datetime) -> datetime:
    """An aware time (a naive one taken as UTC), in UTC."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass(frozen=True)
class Cutover:
    """The latest history export's watermark, and whether all its files are imported."""

    watermark: datetime
    imported: bool

    def covers(self, created_at: datetime | None) -> bool:
        """Whether a message created then is in the import files (at or before the watermark)."""
        return created_at is not None and utc(created_at) <= self.watermark


def read_cutover(conn: Connection) -> Cutover | None:
    """The cut-over the audit table records, or None when no history was ever exported.

    The import is complete when every file of the latest export has a completed
    import task recorded after that export.
    """
    export = audit_entries.latest(conn, EXPORT_ACTION)
    if export is None:
        return None
    detail: dict[str, Any] = export.detail
    watermark = utc(datetime.fromisoformat(str(detail["watermark"]).replace("Z", "+00:00")))
    files = {PurePath(str(path)).name for path in detail.get("files", [])}
    imports = conn.execute(
        select(audit.c.detail).where(audit.c.action == IMPORT_ACTION, audit.c.id > export.id)
    ).scalars()
    done = {str(d.get("file")) for d in imports if (d or {}).get("state") == COMPLETED}
    return Cutover(watermark, imported=bool(files) and files <= done)


_cache: weakref.WeakKeyDictionary[Engine, tuple[float, Cutover | None]] = (
    weakref.WeakKeyDictionary()
)
_cache_lock = threading.Lock()


def current_cutover(engine: Engine) -> Cutover | None:
    """:func:`read_cutover`, read again at most every few seconds for an engine."""
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(engine)
    if cached is not None and now - cached[0] < _TTL:
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
