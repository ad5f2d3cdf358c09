"""The inbound runner on real PostgreSQL, with a stand-in applier: rows applied in id
order, a channel's in order even with two runners, settled done, ignored or failed, and a
transient error retried with backoff."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select

from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.outbox import inbox
from stream_outbox.app_hooks.reference import REFERENCE_BINDING
from stream_outbox.worker.errors import PermanentError, RetryableError
from stream_outbox.worker.health import Heartbeat
from stream_outbox.worker.inbound.apply import Lookups, Outcome
from stream_outbox.worker.inbound.inbox import Inbox
from stream_outbox.worker.inbound.inbox_event import event_from
from stream_outbox.worker.inbound.runner import Runner, status_of
from tests.support.inbound import message_event
from tests.support.processes import wait_for


class StandIn:
    """An applier that records what it was given, answering with ``outcome(event)``."""

    def __init__(self, outcome: Callable[[dict[str, Any]], str] = lambda e: "message inserted"):
        self.outcome = outcome
        self.applied: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(
        self, conn: Connection, binding: Binding, event: dict[str, Any], seen: Lookups
    ) -> str:
        with self.lock:
            self.applied.append((event["cid"], event["message"]["text"]))
        return self.outcome(event)


def store(engine: Engine, *events: dict[str, Any]) -> None:
    Inbox(engine).store_many([event_from(e, f"w-{n}-{id(e)}") for n, e in enumerate(events)])


def settled(engine: Engine) -> list[tuple[str, int, str | None]]:
    query = select(inbox.c.status, inbox.c.attempts, inbox.c.last_error).order_by(inbox.c.id)
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]


def runner(engine: Engine, apply: Any, **options: Any) -> Runner:
    options = {"min_backoff_ms": 1, "max_backoff_ms": 5, "poll_interval": 0.05, **options}
    return Runner(engine, REFERENCE_BINDING, apply, **options)


def test_rows_are_applied_in_id_order_and_settled_done(clean_db: Engine) -> None:
    store(clean_db, *(message_event(f"messaging:c{n % 2}", text=str(n)) for n in range(6)))
    apply = StandIn()
    assert runner(clean_db, apply, batch_size=4).run_once() == 4
    assert runner(clean_db, apply, batch_size=4).run_once() == 2
    assert [text for _, text in apply.applied] == ["0", "1", "2", "3", "4", "5"]
    assert settled(clean_db) == [("done", 1, None)] * 6


def test_ignored_and_reported_outcomes_settle_ignored_with_the_reason(clean_db: Engine) -> None:
    outcomes = {
        "a": Outcome("own echo: ignored", ignored=True),
        "b": Outcome("unknown channel messaging:x: reported", ignored=True),
    }
    store(clean_db, *(message_event(text=t) for t in ("a", "b", "c")))
    runner(clean_db, StandIn(lambda e: outcomes.get(e["message"]["text"], "ok"))).run_once()
    assert settled(clean_db) == [
        ("ignored", 1, "own echo: ignored"),
        ("ignored", 1, "unknown channel messaging:x: reported"),
        ("done", 1, None),
    ]


def test_a_permanent_error_fails_the_row_and_the_rest_go_on(clean_db: Engine) -> None:
    def refuse(event: dict[str, Any]) -> str:
        if event["message"]["text"] == "bad":
            raise PermanentError("the conversation refuses it")
        return "ok"

    store(clean_db, message_event(text="bad"), message_event(text="good"))
    runner(clean_db, StandIn(refuse)).run_once()
    assert settled(clean_db) == [
        ("failed", 1, "PermanentError: the conversation refuses it"),
        ("done", 1, None),
    ]


def test_a_transient_error_is_retried_and_holds_back_its_channel(clean_db: Engine) -> None:
    # Given an applier failing the first attempt at "first" (the database busy)
    tries: list[str] = []

    def busy_once(event: dict[str, Any]) -> str:
        tries.append(event["message"]["text"])
        if tries.count("first") == 1 and event["message"]["text"] == "first":
            raise RetryableError("the database is busy")
        return "ok"

    store(
        clean_db,
        message_event("messaging:a", text="first"),
        message_event("messaging:a", text="second"),
        message_event("messaging:b", text="other"),
    )
    run = runner(clean_db, StandIn(busy_once))
    # When the runner passes once: the other channel goes on, "second" waits for "first"
    run.run_once()
    assert tries == ["first", "other"]
    # Then, once the backoff passed, "first" then "second"
    wait_for(lambda: run.run_once() == 0 and len(tries) == 4, "the retry", timeout=10)
    assert tries == ["first", "other", "first", "second"]
    assert settled(clean_db) == [
        ("done", 2, None),  # the error of the attempt that failed is cleared
        ("done", 1, None),
        ("done", 1, None),
    ]


def test_a_transient_error_past_the_retries_fails_the_row(clean_db: Engine) -> None:
    def down(event: dict[str, Any]) -> str:
        raise RetryableError("Stream is down")

    store(clean_db, message_event())
    run = runner(clean_db, StandIn(down), max_retries=3)
    wait_for(lambda: run.run_once() >= 0 and settled(clean_db)[0][0] == "failed", "failure")
    assert settled(clean_db) == [("failed", 3, "RetryableError: Stream is down")]


def test_two_runners_apply_each_channels_rows_in_order(clean_db: Engine) -> None:
    # Given 200 events over 5 channels
    events = [message_event(f"messaging:c{n % 5}", text=f"{n:03d}") for n in range(200)]
    store(clean_db, *events)
    apply = StandIn()
    # When two runners with small batches drain the inbox at once
    runners = [runner(clean_db, apply, batch_size=7) for _ in range(2)]
    threads = [threading.Thread(target=r.run) for r in runners]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(apply.applied) >= 200, "200 rows applied", timeout=60)
    finally:
        for r in runners:
            r.stop()
        for thread in threads:
            thread.join(timeout=10)
    # Then each row once, and each channel's in the order they were stored
    assert sorted(text for _, text in apply.applied) == [f"{n:03d}" for n in range(200)]
    for channel in range(5):
        texts = [text for cid, text in apply.applied if cid == f"messaging:c{channel}"]
        assert texts == sorted(texts)
    assert {status for status, _, _ in settled(clean_db)} == {"done"}


def test_wake_starts_a_pass_before_the_poll_interval(clean_db: Engine) -> None:
    # Given a runner idle after its first pass, polling once an hour
    apply = StandIn()
    beat = Heartbeat("runner", max_age=60)
    run = runner(clean_db, apply, poll_interval=3600, heartbeat=beat)
    thread = threading.Thread(target=run.run)
    thread.start()
    try:
        wait_for(lambda: beat.check().ok, "the first pass")
        # When a row is stored and the runner woken, it is applied at once
        store(clean_db, message_event())
        run.wake()
        wait_for(lambda: apply.applied, "the row applied after the wake-up", timeout=10)
    finally:
        run.stop()
        thread.join(timeout=10)


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (Outcome("message inserted"), "done"),
        (Outcome("own echo: ignored", ignored=True), "ignored"),
        (Outcome("unknown channel messaging:x: reported", ignored=True), "ignored"),
        ("reconcile written", "done"),
    ],
)
def test_status_of_an_outcome(outcome: str, status: str) -> None:
    assert status_of(outcome).value == status
