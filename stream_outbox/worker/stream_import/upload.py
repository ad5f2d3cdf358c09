"""Stream import: upload the export's files through Stream's Import API, each followed to its end.

Per file (``docs/migrating/import.md``): ``create_import_url`` → PUT the file to the
URL → ``create_import(path, mode)`` → poll ``get_import`` until ``completed``, or
``analyze_failed``/``failed`` with Stream's errors (:mod:`.follow`). Each file's task
and state go to the audit table (``history_import``, keyed by the file's SHA-256), so a
re-run skips what completed, follows what is still running, and never imports a file
twice.

Interrupted at any point, a re-run converges:

* before ``create_import`` is sent, the file's entry says ``creating`` with Stream's
  path of the upload; a re-run that finds it asks ``list_imports`` for a task on that
  path (the call may have reached Stream though its answer did not come back) and
  follows it, or starts the file again when there is none;
* after it, the entry holds the task id (state ``uploaded``): a re-run follows the
  task to its end, whatever state it is in by then;
* a task that failed is started again on a re-run; one that completed is skipped (and
  recorded again as completed when an export was recorded since, whose files the
  cut-over counts: the same bytes imported once are imported).

Once every file of the latest export is imported, the cut-over is completed
(:func:`~stream_outbox.worker.store.cutover.complete_import`): a re-run after a crash
in between completes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from stream_outbox.worker.errors import AdminError
from stream_outbox.worker.store import audit
from stream_outbox.worker.store.cutover import EXPORT_ACTION, IMPORT_ACTION, complete_import
from stream_outbox.worker.stream.imports import ImportAPI
from stream_outbox.worker.stream_import.follow import FileOutcome, FileState, follow, task_on

__all__ = ["MODES", "import_files"]

MODES = ("upsert", "insert")


@dataclass(frozen=True)
class _Ledger:
    """The audit entries of one file of one run: who imports it, and which file."""

    engine: Engine
    actor: str
    path: Path
    sha: str

    def note(self, state: FileState, *, task_id: str | None = None, **more: Any) -> None:
        """Record the file's state (with its task, Stream's path or errors)."""
        detail = {"file": self.path.name, "sha256": self.sha, "task_id": task_id, "state": state}
        detail.update({key: value for key, value in more.items() if value})
        audit.record(self.engine, actor=self.actor, action=IMPORT_ACTION, count=1, detail=detail)


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _recorded(engine: Engine) -> tuple[dict[str, dict[str, Any]], int]:
    """The newest audit entry of each file imported before, by SHA-256 (with its audit
    ``id``), and the id of the latest export's entry (0 if none)."""
    with engine.connect() as conn:
        seen = {
            e.detail["sha256"]: {**e.detail, "id": e.id} for e in audit.entries(conn, IMPORT_ACTION)
        }
        return seen, audit.latest_id(conn, EXPORT_ACTION)


def import_files(
    gateway: ImportAPI,
    engine: Engine,
    files: list[Path],
    *,
    mode: str = "upsert",
    actor: str,
    dry_run: bool = False,
    poll: float = 1.0,
    timeout: float = 24 * 3600,
    report: Callable[[FileOutcome], None] = lambda outcome: None,
) -> list[FileOutcome]:
    """Import ``files`` in order (each may reference the ones before), stopping at the
    first that does not complete; returns each file's outcome."""
    if mode not in MODES:
        raise AdminError(f"mode must be upsert or insert, not {mode!r}")
    seen, export_id = _recorded(engine)
    outcomes: list[FileOutcome] = []
    for path in files:
        ledger = _Ledger(engine, actor, path, _digest(path))
        before = seen.get(ledger.sha)
        if before is not None and before["state"] == FileState.COMPLETED:
            outcome = FileOutcome(path.name, FileState.SKIPPED, before["task_id"])
            if before["id"] < export_id and not dry_run:  # the cut-over counts it for this export
                ledger.note(FileState.COMPLETED, task_id=before["task_id"], skipped=True)
        elif dry_run:
            outcome = FileOutcome(path.name, FileState.WOULD_IMPORT, None)
        else:
            outcome = _import(gateway, ledger, before, mode=mode, poll=poll, timeout=timeout)
        report(outcome)
        outcomes.append(outcome)
        if not outcome.state.ok:
            break
    else:
        if not dry_run:
            complete_import(engine)
    return outcomes


def _import(
    gateway: ImportAPI,
    ledger: _Ledger,
    before: dict[str, Any] | None,
    *,
    mode: str,
    poll: float,
    timeout: float,
) -> FileOutcome:
    """Import one file: follow the task an earlier run started, else upload it and start one."""
    task_id = _started_before(gateway, before)
    if task_id is None:
        task_id = _start(gateway, ledger, mode)
    elif before and before["state"] == FileState.CREATING:
        ledger.note(FileState.UPLOADED, task_id=task_id, stream_path=before["stream_path"])
    name = ledger.path.name
    outcome = follow(gateway, file=name, task_id=task_id, poll=poll, timeout=timeout)
    ledger.note(outcome.state, task_id=task_id, errors=outcome.errors)
    return outcome


def _started_before(gateway: ImportAPI, before: dict[str, Any] | None) -> str | None:
    """The task an earlier run started for the file and that has not ended yet, if any."""
    if before is None or FileState(before["state"]).final:
        return None
    if before["state"] == FileState.CREATING:  # create_import may have reached Stream: ask it
        return task_on(gateway, before["stream_path"])
    return str(before["task_id"])


def _start(gateway: ImportAPI, ledger: _Ledger, mode: str) -> str:
    """Upload the file and create its import task; the audit hears of the path before
    the task is created, and of the task once it is."""
    upload_url, stream_path = gateway.create_import_url(ledger.path.name)
    gateway.upload_file(upload_url, ledger.path)
    ledger.note(FileState.CREATING, stream_path=stream_path)
    task_id = str(gateway.create_import(stream_path, mode)["id"])
    ledger.note(FileState.UPLOADED, task_id=task_id, stream_path=stream_path)
    return task_id
