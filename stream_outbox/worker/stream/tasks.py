"""Stream's asynchronous tasks (a batch delete or deactivation answers with a task id),
and what a finished task's result says."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from stream_outbox.worker.errors import PermanentStreamError, TransientStreamError

__all__ = ["TaskFailed", "channels_not_deleted", "follow_task"]

# A channel Stream cannot find: it holds none, or holds it deleted already (the emulator
# answers "Can't find channel with id X", Stream's text for a missing channel elsewhere)
_MISSING = re.compile(r"can't find|cannot find|not found|does not exist", re.IGNORECASE)


class TaskFailed(PermanentStreamError):
    """A Stream task ended ``failed``; ``result`` is what the task reported."""

    def __init__(self, message: str, *, endpoint: str, result: Any) -> None:
        super().__init__(message, endpoint=endpoint)
        self.result = result


def follow_task(
    get_task: Callable[[], Any],
    task_id: str,
    endpoint: str,
    timeout: float = 30.0,
    stopping: threading.Event | None = None,
) -> dict[str, Any]:
    """Poll ``get_task`` (``GetTask`` of ``task_id``) until the task ends; its result, or
    the error it ended with (:class:`TransientStreamError` if still running at ``timeout``,
    or at once when ``stopping`` is set: the job is retried, the task runs on in Stream)."""
    deadline, delay = time.monotonic() + timeout, 0.05
    stopping = stopping or threading.Event()
    while True:
        task = get_task() or {}
        status = task.get("status")
        if status == "completed":
            return dict(task.get("result") or {})
        if status == "failed":
            raise TaskFailed(
                f"task {task_id} failed: {task.get('result') or task.get('error')}",
                endpoint=endpoint,
                result=task.get("result"),
            )
        if time.monotonic() >= deadline:
            raise TransientStreamError(
                f"task {task_id} still {status} after {timeout:.0f} s", endpoint=endpoint
            )
        if stopping.wait(delay):
            raise TransientStreamError(
                f"task {task_id} still {status}: worker stopping", endpoint=endpoint
            )
        delay = min(delay * 2, 1.0)


def channels_not_deleted(result: Any) -> dict[str, str]:
    """The channels a ``DeleteChannels`` task's result reports not deleted, each with
    Stream's reason (``{cid: {"status": "ok" | "error", "error": ...}}``). A channel Stream
    cannot find counts as deleted; a result of another shape names none."""
    if not isinstance(result, Mapping):
        return {}
    refused: dict[str, str] = {}
    for cid, entry in result.items():
        if not isinstance(entry, Mapping) or entry.get("status") == "ok":
            continue
        error = str(entry.get("error") or "not deleted")
        if not _MISSING.search(error):
            refused[str(cid)] = error
    return refused
