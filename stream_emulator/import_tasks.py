"""Import tasks: uploaded files, and tasks that move through Stream's states on a timer.

States (``docs/migrating/import.md``): a task is created ``uploaded`` (the CLI's
answer), validation runs in ``analyzing`` and ends in ``analyze_failed`` with a list
of errors, or the data is imported and the task is ``completed``. The CLI and API
skip the dashboard's ``waiting_confirmation``. ``importing`` (between analysis and
completion) and ``failed`` (an import that breaks after analysis; the emulator's
injected failure) are inferred names.

Each state lasts ``state_seconds``; a task moves on when it is read (``GET
/imports/{id}``, ``GET /imports``, the emulator's ``state()``), as if a worker had run
in the meantime. Not thread-safe by itself: ``EmulatorCore`` holds its lock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stream_emulator import import_apply
from stream_emulator.import_file import MAX_FILE_BYTES, analyze
from stream_emulator.store import Store

UPLOADED = "uploaded"
ANALYZING = "analyzing"
ANALYZE_FAILED = "analyze_failed"
IMPORTING = "importing"
COMPLETED = "completed"
FAILED = "failed"
FINAL_STATES = frozenset({ANALYZE_FAILED, COMPLETED, FAILED})
DEFAULT_STATE_SECONDS = 0.05
PATH_PREFIX = "s3://stream-import/emulator"


def iso(seconds: float) -> str:
    """Unix seconds as Stream's RFC 3339 time."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Upload:
    """A file named by ``create_import_url``; ``content`` is None until it is PUT."""

    token: str
    filename: str
    path: str
    content: bytes | None = None


@dataclass
class ImportTask:
    """One import and its history of state changes."""

    id: str
    path: str
    mode: str
    size: int
    created: float
    state: str = UPLOADED
    changed: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    content: bytes = b""
    fail_with: list[dict[str, Any]] | None = None

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
    """Uploads and import tasks of one emulator, with their settings."""

    state_seconds: float = DEFAULT_STATE_SECONDS
    max_bytes: int = MAX_FILE_BYTES
    uploads: dict[str, Upload] = field(default_factory=dict)
    tasks: dict[str, ImportTask] = field(default_factory=dict)
    failures: list[list[dict[str, Any]]] = field(default_factory=list)

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
        content = upload.content or b""
        task = ImportTask(str(uuid.uuid4()), upload.path, mode, len(content), now, content=content)
        task.changed = now
        if self.failures:
            task.fail_with = self.failures.pop(0)
        self.tasks[task.id] = task
        return task

    def listed(self) -> list[ImportTask]:
        """Tasks newest first."""
        return sorted(self.tasks.values(), key=lambda t: t.created, reverse=True)

    def advance(self, store: Store, now: float) -> None:
        """Move every unfinished task through the states whose time has come."""
        for task in sorted(self.tasks.values(), key=lambda t: t.created):
            while task.state not in FINAL_STATES and now >= task.changed + self.state_seconds:
                self._step(task, store, task.changed + self.state_seconds)

    def _step(self, task: ImportTask, store: Store, at: float) -> None:
        if task.state == UPLOADED:
            task.move(ANALYZING, at)
        elif task.state == ANALYZING:
            analysis = analyze(task.content, store, self.max_bytes)
            task.result = analysis.report()
            if analysis.errors:
                task.move(ANALYZE_FAILED, at)
            else:
                task.move(IMPORTING, at)
        elif task.fail_with is not None:  # injected: nothing of the file is applied
            assert task.result is not None
            task.result["errors"] = task.fail_with
            task.move(FAILED, at)
        else:
            # validated against the store as it was then; checked again now, so that an
            # import completed in between cannot leave this one half applied
            analysis = analyze(task.content, store, self.max_bytes)
            if analysis.errors:
                task.result = analysis.report()
                task.move(FAILED, at)
                return
            written = import_apply.apply(analysis.items, store, task.mode, iso(at))
            task.result = {**analysis.report(), "imported": written}
            task.move(COMPLETED, at)
