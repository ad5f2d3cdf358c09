"""Following Stream's asynchronous tasks (pure: the task's answers are scripted)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from stream_outbox.worker.errors import PermanentStreamError, TransientStreamError
from stream_outbox.worker.stream.tasks import TaskFailed, channels_not_deleted, follow_task


def _answers(*statuses: dict[str, Any]) -> tuple[Callable[[], Any], list[int]]:
    """A ``get_task`` answering ``statuses`` in turn (the last one from then on)."""
    calls = [0]

    def get_task() -> Any:
        calls[0] += 1
        return statuses[min(calls[0], len(statuses)) - 1]

    return get_task, calls


def test_a_task_is_followed_to_its_result() -> None:
    get_task, calls = _answers(
        {"status": "waiting"}, {"status": "running"}, {"status": "completed", "result": {"n": 2}}
    )
    assert follow_task(get_task, "t1", "DeactivateUsers") == {"n": 2}
    assert calls == [3]


def test_a_failed_task_is_a_permanent_error_naming_it() -> None:
    get_task, _ = _answers({"status": "failed", "result": "user x does not exist"})
    with pytest.raises(PermanentStreamError, match="task t1 failed: user x does not exist"):
        follow_task(get_task, "t1", "DeleteUsers")


def test_a_stopping_worker_stops_following_at_once() -> None:
    # A worker shutting down does not poll a running task for up to 30 s: the job is
    # retried later (the task goes on in Stream, and its operation is idempotent)
    get_task, calls = _answers({"status": "running"})
    stopping = threading.Event()
    stopping.set()
    with pytest.raises(TransientStreamError, match="task t1 still running: worker stopping"):
        follow_task(get_task, "t1", "DeactivateUsers", timeout=30.0, stopping=stopping)
    assert calls == [1]


def test_a_task_still_running_at_the_timeout_is_retried_later() -> None:
    get_task, _ = _answers({"status": "running"})
    with pytest.raises(TransientStreamError, match="task t1 still running after 0 s"):
        follow_task(get_task, "t1", "DeactivateUsers", timeout=0.0)


def test_a_failed_task_keeps_its_result_for_the_caller() -> None:
    result = {"messaging:a": {"status": "error", "error": "boom"}}
    get_task, _ = _answers({"status": "failed", "result": result})
    with pytest.raises(TaskFailed) as caught:
        follow_task(get_task, "t1", "DeleteChannels")
    assert caught.value.result == result


def test_a_delete_channels_result_names_the_channels_not_deleted() -> None:
    # Stream's DeleteChannels result: each cid with its status, and an error when not "ok";
    # a channel Stream cannot find counts as deleted
    result = {
        "messaging:a": {"status": "ok"},
        "messaging:b": {"status": "error", "error": "Can't find channel with id messaging:b"},
        "messaging:c": {"status": "error", "error": "channel is frozen"},
        "messaging:d": {"status": "error"},
    }
    assert channels_not_deleted(result) == {
        "messaging:c": "channel is frozen",
        "messaging:d": "not deleted",
    }
    assert channels_not_deleted("something went wrong") == {}
