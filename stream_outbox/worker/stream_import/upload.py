"""History import: upload export files through Stream's import API and follow each to its end.

Per file (``docs/migrating/import.md``): ``create_import_url`` → PUT the file to the
URL → ``create_import(path, mode)`` → poll ``get_import`` until ``completed``, or
``analyze_failed``/``failed`` with Stream's errors. Each file's task and final state go
to the audit table (``history_import``, keyed by the file's SHA-256), so a re-run skips
what completed, follows what is still running, and never imports a file twice.

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
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from stream_outbox.app_hooks.outbox import audit
from stream_outbox.worker.admin import operations as admin
from stream_outbox.worker.store.cutover import EXPORT_ACTION
from stream_outbox.worker.stream.imports import ImportAPI

__all__ = ["DONE", "FileOutcome", "import_files"]

DONE = "completed"
_FINAL = frozenset({DONE, "analyze_failed", "failed"})
ACTION = "history_import"
_CREATING = "creating"  # uploaded; create_import sent or about to be, its answer not recorded
_LIST_PAGE = 100


@dataclass(frozen=True)
class FileOutcome:
    """What became of one file: Stream's final state, its task, and its errors (one line)."""

    file: str
    state: str
    task_id: str | None
    errors: str = ""


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _recorded(engine: Engine) -> tuple[dict[str, dict[str, Any]], int]:
    """The newest audit entry of each file imported before, by SHA-256 (with its audit
    ``id``), and the id of the latest export's entry (0 if none)."""
    query = select(audit.c.id, audit.c.detail).where(audit.c.action == ACTION)
    latest = select(func.max(audit.c.id)).where(audit.c.action == EXPORT_ACTION)
    with engine.connect() as conn:
        seen = {d["sha256"]: {**d, "id": n} for n, d in conn.execute(query.order_by(audit.c.id))}
        return seen, int(conn.scalar(latest) or 0)


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
    if mode not in ("upsert", "insert"):
        raise admin.AdminError(f"mode must be upsert or insert, not {mode!r}")
    seen, export_id = _recorded(engine)
    outcomes: list[FileOutcome] = []
    for path in files:
        sha = _digest(path)
        before = seen.get(sha)
        if before is not None and before["state"] == DONE:
            outcome = FileOutcome(path.name, "skipped: imported before", before["task_id"])
            if before["id"] < export_id and not dry_run:  # the cut-over counts it for this export
                _audit(engine, actor, path, sha, DONE, task_id=before["task_id"], skipped=True)
        elif dry_run:
            outcome = FileOutcome(path.name, "would import", None)
        else:
            audit = partial(_audit, engine, actor, path, sha)
            task_id = _started_before(gateway, before)
            if task_id is None:
                task_id = _start(gateway, path, mode, audit)
            elif before and before["state"] == _CREATING:
                audit("uploaded", task_id=task_id, stream_path=before["stream_path"])
            outcome = _follow(gateway, path, task_id, poll, timeout)
            audit(outcome.state, task_id=task_id, errors=outcome.errors)
        report(outcome)
        outcomes.append(outcome)
        if outcome.state not in (DONE, "would import") and not outcome.state.startswith("skip"):
            break
    return outcomes


def _started_before(gateway: ImportAPI, before: dict[str, Any] | None) -> str | None:
    """The task an earlier run started for the file and that has not ended yet, if any."""
    if before is None or before["state"] in _FINAL:
        return None
    if before["state"] == _CREATING:  # create_import may have reached Stream: ask it
        return _task_on(gateway, before["stream_path"])
    return str(before["task_id"])


def _task_on(gateway: ImportAPI, stream_path: str) -> str | None:
    """The id of the import task on an uploaded file's path, if Stream has one."""
    offset = 0
    while True:
        tasks = gateway.list_imports(_LIST_PAGE, offset)
        for task in tasks:
            if task.get("path") == stream_path:
                return str(task["id"])
        if len(tasks) < _LIST_PAGE:
            return None
        offset += len(tasks)


def _start(gateway: ImportAPI, path: Path, mode: str, audit: Callable[..., None]) -> str:
    """Upload the file and create its import task; the audit hears of the path before
    the task is created, and of the task once it is."""
    upload_url, stream_path = gateway.create_import_url(path.name)
    gateway.upload_file(upload_url, path)
    audit(_CREATING, stream_path=stream_path)
    task_id = str(gateway.create_import(stream_path, mode)["id"])
    audit("uploaded", task_id=task_id, stream_path=stream_path)
    return task_id


def _follow(
    gateway: ImportAPI, path: Path, task_id: str, poll: float, timeout: float
) -> FileOutcome:
    deadline = time.monotonic() + timeout
    while True:
        task = gateway.get_import(task_id)
        state = str(task.get("state"))
        if state in _FINAL:
            return FileOutcome(path.name, state, task_id, _errors(task) if state != DONE else "")
        if time.monotonic() >= deadline:
            return FileOutcome(path.name, f"still {state}", task_id, "gave up waiting")
        time.sleep(poll)


def _errors(task: dict[str, Any]) -> str:
    """Stream's errors of a task, in one line."""
    errors = (task.get("result") or {}).get("errors") or []
    parts = []
    for error in errors[:5]:
        if isinstance(error, dict):
            where = f"line {error['line']}: " if "line" in error else ""
            parts.append(where + str(error.get("error") or error.get("message") or error))
        else:
            parts.append(str(error))
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts).replace("\n", " ") + more


def _audit(
    engine: Engine,
    actor: str,
    path: Path,
    sha: str,
    state: str,
    *,
    task_id: str | None = None,
    errors: str = "",
    **more: Any,
) -> None:
    detail = {"file": path.name, "sha256": sha, "task_id": task_id, "state": state, **more}
    if errors:
        detail["errors"] = errors
    admin.record(engine, actor=actor, action=ACTION, count=1, detail=detail)
