"""An import file's state, and its import task followed to its end through Stream's Import API.

Stream's task ends ``completed``, ``analyze_failed`` or ``failed`` (with its errors);
:func:`follow` asks ``get_import`` until it does, or until the time given runs out.
:func:`task_on` finds the task Stream started on an uploaded file's path, for a run
that never heard ``create_import``'s answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from stream_outbox.worker.stream.imports import ImportAPI

__all__ = ["FileOutcome", "FileState", "follow", "task_on"]

_LIST_PAGE = 100
_ERRORS_SHOWN = 5


class FileState(StrEnum):
    """Where one import file stands: in the audit's entries, and in what a run reports."""

    CREATING = "creating"  # uploaded; create_import sent or about to be, its answer not recorded
    UPLOADED = "uploaded"  # its import task created
    COMPLETED = "completed"  # Stream's final states
    ANALYZE_FAILED = "analyze_failed"
    FAILED = "failed"
    STILL_RUNNING = "still running"  # the run gave up waiting; a re-run follows the task on
    SKIPPED = "skipped: imported before"
    WOULD_IMPORT = "would import"  # a dry run

    @classmethod
    def _missing_(cls, value: object) -> FileState | None:
        """An entry written as ``still <Stream's state>`` reads as still running."""
        return cls.STILL_RUNNING if str(value).startswith("still ") else None

    @property
    def final(self) -> bool:
        """Stream's task has ended."""
        return self in _FINAL

    @property
    def ok(self) -> bool:
        """The run goes on to the next file."""
        return self in _OK


_FINAL = frozenset({FileState.COMPLETED, FileState.ANALYZE_FAILED, FileState.FAILED})
_OK = frozenset({FileState.COMPLETED, FileState.SKIPPED, FileState.WOULD_IMPORT})


@dataclass(frozen=True)
class FileOutcome:
    """What became of one file: its state, its task, and Stream's errors (one line)."""

    file: str
    state: FileState
    task_id: str | None
    errors: str = ""

    def line(self) -> str:
        """``history-0001.jsonl: completed``, with the errors when there are any."""
        return f"{self.file}: {self.state}" + (f" ({self.errors})" if self.errors else "")


def follow(
    gateway: ImportAPI, *, file: str, task_id: str, poll: float, timeout: float
) -> FileOutcome:
    """Ask Stream about the task every ``poll`` seconds until it ends or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        task = gateway.get_import(task_id)
        state = str(task.get("state"))
        if state in _FINAL:
            ended = FileState(state)
            errors = "" if ended is FileState.COMPLETED else _errors(task)
            return FileOutcome(file, ended, task_id, errors)
        if time.monotonic() >= deadline:
            return FileOutcome(file, FileState.STILL_RUNNING, task_id, f"gave up waiting: {state}")
        time.sleep(poll)


def task_on(gateway: ImportAPI, stream_path: str) -> str | None:
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


def _errors(task: dict[str, Any]) -> str:
    """Stream's errors of a task, in one line."""
    errors = (task.get("result") or {}).get("errors") or []
    parts = []
    for error in errors[:_ERRORS_SHOWN]:
        if isinstance(error, dict):
            where = f"line {error['line']}: " if "line" in error else ""
            parts.append(where + str(error.get("error") or error.get("message") or error))
        else:
            parts.append(str(error))
    more = f" (+{len(errors) - _ERRORS_SHOWN} more)" if len(errors) > _ERRORS_SHOWN else ""
    return "; ".join(parts).replace("\n", " ") + more
