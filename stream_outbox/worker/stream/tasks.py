"""Stream's asynchronous tasks (a batch delete or deactivation answers with a task id)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from stream_outbox.worker.errors import PermanentStreamError, TransientStreamError

__all__ = ["follow_task"]


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
            raise PermanentStreamError(
                f"task {task_id} failed: {task.get('result') or task.get('error')}",
                endpoint=endpoint,
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
