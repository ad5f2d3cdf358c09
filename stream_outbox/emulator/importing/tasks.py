"""Import tasks: uploaded files, and tasks that move through Stream's states.

States (``docs/migrating/import.md``): a task is created ``uploaded`` (the CLI's
answer), validation runs in ``analyzing`` and ends in ``analyze_failed`` with a list
of errors, or the data is imported and the task is ``completed``. The CLI and API
skip the dashboard's ``waiting_confirmation``. ``importing`` (between analysis and
completion) and ``failed`` (an import that breaks after analysis; the emulator's
injected failure) are inferred names.

Each state lasts at least ``state_seconds``, and analysing or importing lasts as long
as the work takes. A task moves on when it is read (``GET /imports/{id}``, ``GET
/imports``, the emulator's ``state()``), as if a worker had run in the meantime. Tasks
run one after the other, in the order they were created. Files up to
``INLINE_BYTES`` are analysed and applied when the task is read; bigger ones on a
background thread, a chunk of lines at a time under the emulator's lock, so that the
API keeps answering. ``advance`` runs under that lock.
"""

from __future__ import annotations

import contextlib
import queue
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from stream_outbox.emulator.importing.file import MAX_FILE_BYTES
from stream_outbox.emulator.importing.work import (
    Guard,
    Job,
    analyze_file,
    apply_file,
    iso,
)
from stream_outbox.emulator.state.store import Store, unix_now

UPLOADED = "uploaded"
ANALYZING = "analyzing"
ANALYZE_FAILED = "analyze_failed"
IMPORTING = "importing"
COMPLETED = "completed"
FAILED = "failed"
FINAL_STATES = frozenset({ANALYZE_FAILED, COMPLETED, FAILED})
DEFAULT_STATE_SECONDS = 0.05
PATH_PREFIX = "s3://stream-import/emulator"
INLINE_BYTES = 1024 * 1024


@dataclass
class Upload:
    """A file named by ``create_import_url``; ``file`` is None until it is PUT."""

    token: str
    filename: str
    path: str
    file: Path | None = None
    size: int = 0


@dataclass
class ImportTask:
    """One import and its history of state changes."""

    id: str
    path: str
    mode: str
    size: int
    created: float
    file: Path
    state: str = UPLOADED
    changed: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    fail_with: list[dict[str, Any]] | None = None
    job: Job | None = None

    def move(self, state: str, at: float) -> None:
        """Change state at ``at`` (unix seconds), recording it in ``history``."""
        self.history.append({"created_at": iso(at), "prev_state": self.state, "next_state": state})
        self.state, self.changed = state, at

    def view(self) -> dict[str, Any]:
        """The ``import_task`` object."""
        view: dict[str, Any] = {
            "id": self.id,
            "path": self.path,
            "mode": self.mode,
            "state": self.state,
            "size": self.size,
            "created_at": iso(self.created),
            "updated_at": iso(self.changed or self.created),
            "history": [dict(h) for h in self.history],
        }
        if self.result is not None:
            view["result"] = self.result
        return view


@dataclass
class ImportBook:
    """Uploads and import tasks of one emulator, with their settings.

    ``lock`` is the emulator's lock (held by the caller of ``advance``), taken by the
    background worker for each chunk of a large file.
    """

    state_seconds: float = DEFAULT_STATE_SECONDS
    max_bytes: int = MAX_FILE_BYTES
    upload_max_bytes: int = MAX_FILE_BYTES
    lock: threading.Lock = field(default_factory=threading.Lock)
    channel_types: frozenset[str] | None = None
    uploads: dict[str, Upload] = field(default_factory=dict)
    tasks: dict[str, ImportTask] = field(default_factory=dict)
    failures: list[list[dict[str, Any]]] = field(default_factory=list)
    closed: bool = False
    _dir: tempfile.TemporaryDirectory[str] | None = None
    _queue: queue.Queue[Callable[[], None] | None] | None = None

    @property
    def directory(self) -> Path:
        """Where uploaded files are kept (removed by ``close``)."""
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="stream-emulator-uploads-")
        return Path(self._dir.name)

    def close(self) -> None:
        """Stop the worker and remove the uploaded files."""
        self.closed = True
        if self._queue is not None:
            self._queue.put(None)
        if self._dir is not None:
            self._dir.cleanup()

    def new_upload(self, filename: str) -> Upload:
        """Reserve a path and an upload token for ``filename``."""
        token = uuid.uuid4().hex
        upload = Upload(token, filename, f"{PATH_PREFIX}/{token}/{filename}")
        self.uploads[token] = upload
        return upload

    def by_path(self, path: str) -> Upload | None:
        """The upload behind an import path."""
        return next((u for u in self.uploads.values() if u.path == path), None)

    def create(self, upload: Upload, mode: str, now: float) -> ImportTask:
        """A new task on the uploaded file, ``uploaded``; it takes a queued failure."""
        assert upload.file is not None
        task = ImportTask(str(uuid.uuid4()), upload.path, mode, upload.size, now, upload.file)
        task.changed = now
        if self.failures:
            task.fail_with = self.failures.pop(0)
        self.tasks[task.id] = task
        return task

    def listed(self) -> list[ImportTask]:
        """Tasks newest first."""
        return sorted(self.tasks.values(), key=lambda t: t.created, reverse=True)

    def advance(self, store: Store, now: float) -> None:
        """Move tasks through the states whose time has come, oldest first; a task
        does not start before the ones created earlier have ended."""
        for task in sorted(self.tasks.values(), key=lambda t: t.created):
            self._progress(task, store, now)
            if task.state not in FINAL_STATES:
                return

    def _progress(self, task: ImportTask, store: Store, now: float) -> None:
        while task.state not in FINAL_STATES:
            due = task.changed + self.state_seconds
            if now < due:
                return
            if task.state == UPLOADED:
                task.move(ANALYZING, due)
                limits = (task.size, self.max_bytes)
                work = partial(analyze_file, task.file, store, limits, self.channel_types)
                self._start(task, partial(work, stopped=self._stopped))
                continue
            job = task.job
            if job is None or job.finished is None:
                return
            at = max(due, min(job.finished, now))
            if task.state == ANALYZING:
                task.result = job.result
                if job.failed:
                    task.move(ANALYZE_FAILED, at)
                    continue
                task.move(IMPORTING, at)
                if task.fail_with is None:
                    work = partial(apply_file, task.file, store, task.mode, dict(job.result))
                    self._start(task, partial(work, stopped=self._stopped))
                else:
                    task.job = Job(result=job.result, finished=at)
            elif task.fail_with is not None:  # injected: nothing of the file is applied
                task.result = {**(task.result or {}), "errors": task.fail_with}
                task.move(FAILED, at)
            else:
                task.result = job.result
                task.move(FAILED if job.failed else COMPLETED, at)

    def _start(self, task: ImportTask, work: Callable[[Guard], Job]) -> None:
        """Run ``work`` now (small files: the caller holds the lock) or on the worker."""
        task.job = Job()
        if task.size <= INLINE_BYTES:
            done = work(contextlib.nullcontext)
            task.job = Job(result=done.result, failed=done.failed, finished=unix_now())
            return
        job = task.job

        def run() -> None:
            try:
                done = work(lambda: self.lock)
            except Exception as exc:  # a bug must not leave the task waiting forever
                error = {"error": f"emulator import error: {exc}"}
                done = Job(result={"errors": [error]}, failed=True)
            job.result, job.failed = done.result, done.failed
            job.finished = unix_now()

        self._worker().put(run)

    def _stopped(self) -> bool:
        return self.closed

    def _worker(self) -> queue.Queue[Callable[[], None] | None]:
        if self._queue is None:
            jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
            self._queue = jobs

            def loop() -> None:
                while (job := jobs.get()) is not None:
                    job()

            threading.Thread(target=loop, name="stream-emulator-import", daemon=True).start()
        return self._queue
