"""Which queues a worker process's Dramatiq workers consume, and with how many threads."""

from __future__ import annotations

import pytest
from dramatiq.brokers.stub import StubBroker

from stream_outbox.worker.pipeline.processes import build_workers, run_worker
from stream_outbox.worker.settings import Settings


def settings_with(priority_threads: int) -> Settings:
    return Settings(
        database_url="postgresql://localhost/x",
        worker_threads=8,
        priority_threads=priority_threads,
        queue_name="q",
    )


def shape(queue: str, priority_threads: int) -> list[tuple[int, set[str] | None]]:
    workers = build_workers(StubBroker(), settings_with(priority_threads), queue)
    return [(w.worker_threads, w.consumer_whitelist or None) for w in workers]


def test_by_default_threads_are_kept_for_the_priority_queue() -> None:
    assert shape("all", 2) == [(8, {"q"}), (2, {"q_priority"})]


def test_without_kept_threads_the_workers_threads_take_both_queues() -> None:
    assert shape("all", 0) == [(8, None)]


def test_a_process_of_its_own_for_either_queue() -> None:
    assert shape("priority", 3) == [(3, {"q_priority"})]
    assert shape("priority", 0) == [(2, {"q_priority"})]
    assert shape("backlog", 2) == [(8, {"q"})]


def test_an_unknown_queue_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="unknown queue 'urgent': use all, backlog or priority"):
        run_worker(settings_with(2), "urgent")
