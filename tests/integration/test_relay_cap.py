"""The relay keeps at most ``max_dispatched`` rows dispatched (real PostgreSQL): a backlog
past it waits pending in the outbox and is claimed as rows settle, so no row waits in the
queue past the visibility timeout and is dispatched again while its job is still queued."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import Engine

from stream_outbox.worker.pipeline.relay import Relay
from stream_outbox.worker.store.repository import OutboxRepository
from tests.support.outbox import add_row, status_counts


def _relay(engine: Engine, sent: list[Any], cap: int) -> Relay:
    broker = StubBroker()
    actor = dramatiq.actor(lambda *args: sent.append(args), broker=broker, actor_name="sync")
    return Relay(OutboxRepository(engine), actor, batch_size=8, max_dispatched=cap)


def test_the_backlog_past_the_cap_stays_pending_until_rows_settle(clean_db: Engine) -> None:
    # Given a backlog of 30 rows and a relay that keeps at most 10 dispatched
    rows = [add_row(clean_db, target_id=f"u{n}") for n in range(30)]
    sent: list[Any] = []
    relay = _relay(clean_db, sent, cap=10)
    # When it drains: then 10 are dispatched, the others stay pending however often it runs
    assert relay.drain() == 10
    assert relay.drain() == 0
    assert status_counts(clean_db) == {"dispatched": 10, "pending": 20}
    # When 4 of them settle, then 4 more are claimed, and no more
    OutboxRepository(clean_db).mark_done(rows[:4])
    assert relay.drain() == 4
    assert status_counts(clean_db) == {"done": 4, "dispatched": 10, "pending": 16}


def test_rows_an_app_asked_to_go_first_are_dispatched_past_the_cap(clean_db: Engine) -> None:
    # Given the cap reached by the backlog
    for n in range(5):
        add_row(clean_db, target_id=f"u{n}")
    relay = _relay(clean_db, [], cap=5)
    relay.drain()
    # When an on-demand row comes, then it is dispatched all the same
    add_row(clean_db, target_kind="conversation", target_id="c1", priority=1)
    assert relay.run_once() == 1
    assert status_counts(clean_db) == {"dispatched": 6}
