"""Stream's asynchronous tasks (a batch delete or deactivation answers with a task id)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from worker.errors import PermanentStreamError, TransientStreamError

__all__ = ["follow_task"]


def follow_task(
    get_task: Callable[[], Any], task_id: str, endpoint: str, timeout: float = 30.0
) -> dict[str, Any]:
    """Poll ``get_task`` (``GetTask`` of ``task_id``) until the task ends; its result, or
    the error it ended with (:class:`TransientStreamError` if still running at ``timeout``)."""
    deadline, delay = time.monotonic() + timeout, 0.05
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
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
