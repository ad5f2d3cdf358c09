"""Convergence: whatever happens, once the outbox drains, Stream holds what the database says.

Hypothesis draws a sequence of steps: application transactions through the reference
app's ORM sessions with capture installed (users signing up, renamed, deleted;
profiles; conversations created, deleted and back; participants joining and leaving, one by
one or all at once; invitations and proposals; events renamed, one or all, and
deleted; messages), each optionally followed by a relay pass so that jobs run while
the changes go on, interleaved with faults: Stream answering 5xx, 400 (a permanent
error) or 429 (a limit with a one-second window, lifted after a while), calls that
hang past the SDK's timeout or answer slowly within it, dropped connections (with and
without the call carried out), duplicated and reordered jobs, one kind of job sent
ahead of the others, jobs lost after dispatch (the queue flushed after a relay pass:
the visibility timeout brings them back through ``relay.sweep()``), and quiet moments
when everything drains.

Then the outbox drains, and: no row is left pending or dispatched; a row failed only
for a permanent error (a 400 the step injected); after the faults clear, a replay of
the failed rows (``worker.operations.replay.replay``) converges them; every row is done; and the
emulator's state equals the desired state computed from the database for every user
and channel (``compare(desired=read_desired(...), held=held_from_snapshot(emu.state()))``
is empty, deleted conversations' channels included).

The example budget is fixed and derandomized for CI (``CONVERGENCE_EXAMPLES``, default
12); a failure prints its steps and a ``@reproduce_failure`` blob. For a longer random
search: ``CONVERGENCE_EXAMPLES=200 CONVERGENCE_SEED=1234 uv run pytest tests/property``.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from dramatiq.errors import QueueJoinTimeout
from hypothesis import HealthCheck, example, given, note, seed, settings
from hypothesis import strategies as st
from redis import Redis
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from stream_outbox.app_hooks.outbox import Status, outbox
from stream_outbox.app_hooks.outbox import metadata as outbox_metadata
from stream_outbox.app_hooks.reference import REFERENCE_BINDING, Base
from stream_outbox.worker.operations.replay import replay
from stream_outbox.worker.operations.rows import Filters
from stream_outbox.worker.pipeline.jobs import plan_jobs
from stream_outbox.worker.store.repository import OutboxRow
from stream_outbox.worker.verify.compare import compare
from stream_outbox.worker.verify.readers import held_from_snapshot, read_desired
from tests.support.app_model import OPERATIONS, AppModel, Op
from tests.support.pipeline import Pipeline
from tests.support.redis import REDIS_PREFIX

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("CONVERGENCE_EXAMPLES", "12"))
SEED = os.environ.get("CONVERGENCE_SEED")
RATE_LIMIT_SECONDS = 1.5
SETTLE_SECONDS = 45.0

ENDPOINTS = (
    "UpdateUsers",
    "DeactivateUsers",
    "GetOrCreateChannel",
    "QueryMembers",
    "UpdateChannel",
    "UpdateChannelPartial",
    "DeleteChannel",
    "SendMessage",
    None,  # any endpoint
)

# -- the steps -------------------------------------------------------------------------

_index = st.integers(min_value=-1, max_value=9)
_app_op = st.sampled_from(sorted(OPERATIONS)).flatmap(
    lambda name: st.tuples(st.just(name), *([_index] * OPERATIONS[name]))
)
_transaction = st.tuples(
    st.just("txn"), st.lists(_app_op, min_size=1, max_size=3).map(tuple), st.booleans()
)
_endpoint = st.sampled_from(ENDPOINTS)
_fault = st.one_of(
    st.tuples(st.just("fail"), _endpoint, st.sampled_from([500, 502, 503]), st.integers(1, 2)),
    st.tuples(st.just("reject"), _endpoint),
    st.tuples(st.just("rate_limit"), st.sampled_from(ENDPOINTS[:-1]), st.integers(1, 3)),
    st.tuples(st.just("hang"), _endpoint, st.integers(1, 2)),
    st.tuples(st.just("slow"), _endpoint, st.integers(1, 2)),
    st.tuples(st.just("drop"), _endpoint, st.integers(1, 2), st.booleans()),
    st.tuples(st.just("duplicate"), st.integers(0, 30), st.integers(1, 3)),
    st.tuples(st.just("reorder"), st.randoms(use_true_random=False)),
    st.tuples(st.just("send_only"), st.sampled_from(["user", "conversation", "message"])),
    st.tuples(st.just("lose")),
    st.tuples(st.just("settle")),
)
STEPS = st.lists(st.one_of(_transaction, _transaction, _fault), min_size=1, max_size=18)

# Always run too (searches rarely draw a restore after the deletion reached Stream): the
# conversation deleted with its channel, then back under its old id with a new message
# while Stream fails and jobs double, then edited: the channel's next generation.
RESTORED: list[tuple[Any, ...]] = [
    ("txn", (("message", 0, 0, 0),), False),
    ("settle",),
    ("txn", (("delete_conversation", 0),), True),
    ("settle",),
    ("fail", "GetOrCreateChannel", 500, 1),
    ("txn", (("restore_conversation", 0, 1), ("message", 0, 0, 1)), True),
    ("duplicate", 0, 2),
    ("txn", (("edit_message", 0, 2), ("message", 0, 1, 3)), False),
]

# Every example starts from four users, two of them in a conversation.
PREAMBLE: list[Op] = [
    ("sign_up", 1, 1),
    ("sign_up", 3, 0),
    ("sign_up", 0, 0),
    ("sign_up", 4, 1),
    ("conversation", 0, 1, -1),
]


# -- the world of one example ---------------------------------------------------------


@dataclass
class World:
    """One example: the pipeline, the app model and what the faults did."""

    pipe: Pipeline
    app: AppModel
    rejections: int = 0  # permanent errors injected
    rate_limited: dict[str, float] = field(default_factory=dict)  # endpoint -> lift time

    def step(self, step: tuple[Any, ...]) -> None:
        getattr(self, f"_{step[0]}")(*step[1:])
        self.lift_rate_limits()

    def _txn(self, ops: tuple[Op, ...], relay: bool = False) -> None:
        """An application transaction, then (``relay``) a relay pass: jobs run meanwhile."""
        self.app.transaction(ops)
        if relay:
            self.pipe.relay.run_once()

    def _fail(self, endpoint: str | None, status: int, times: int) -> None:
        self.pipe.emu.inject_failure(endpoint or "*", status=status, times=times)

    def _reject(self, endpoint: str | None) -> None:
        self.rejections += 1
        self.pipe.emu.inject_failure(
            endpoint or "*", status=400, times=1, code=4, message="injected validation error"
        )

    def _rate_limit(self, endpoint: str, limit: int) -> None:
        self.pipe.emu.set_rate_limit(endpoint, limit)
        self.rate_limited[endpoint] = time.monotonic() + RATE_LIMIT_SECONDS

    def _hang(self, endpoint: str | None, times: int) -> None:
        self.pipe.emu.hang(
            endpoint or "*",
            seconds=self.pipe.settings.stream_timeout.total_seconds() + 0.3,
            times=times,
        )

    def _slow(self, endpoint: str | None, times: int) -> None:
        """Calls that take a while but answer within the SDK's timeout."""
        self.pipe.emu.hang(
            endpoint or "*",
            seconds=self.pipe.settings.stream_timeout.total_seconds() / 2,
            times=times,
            apply=True,
        )

    def _drop(self, endpoint: str | None, times: int, apply: bool) -> None:
        self.pipe.emu.drop_connections(endpoint or "*", times=times, apply=apply)

    def _duplicate(self, target: int, copies: int) -> None:
        """Send again the job of a target's claimed rows, as a duplicated message would."""
        with self.pipe.engine.connect() as conn:
            targets = list(
                conn.execute(
                    select(outbox.c.target_kind, outbox.c.target_id)
                    .group_by(outbox.c.target_kind, outbox.c.target_id)
                    .order_by(text("min(id)"))
                )
            )
            if not targets:
                return
            kind, target_id = targets[target % len(targets)]
            rows = conn.execute(
                select(outbox).where(
                    outbox.c.target_kind == kind,
                    outbox.c.target_id == target_id,
                    outbox.c.status != Status.PENDING,
                )
            ).all()
        claimed = [OutboxRow(r.id, kind, target_id, r.event, dict(r.payload)) for r in rows]
        jobs = plan_jobs(claimed) or [plan_jobs([OutboxRow(0, kind, target_id, "dup", {})])[0]]
        for job in jobs:
            row_ids = [] if job.row_ids == (0,) else list(job.row_ids)
            for _ in range(copies):
                self.pipe.actor.send(job.kind, list(job.target_ids), row_ids, job.payload)

    def _reorder(self, rng: random.Random) -> None:
        """Claim rows as the relay would, then send their jobs shuffled, some twice."""
        jobs = plan_jobs(self.pipe.repo.claim(100))
        jobs += [job for job in jobs if rng.random() < 0.3]
        rng.shuffle(jobs)
        for job in jobs:
            self.pipe.actor.send(job.kind, list(job.target_ids), list(job.row_ids), job.payload)

    def _lose(self) -> None:
        """A relay pass whose jobs vanish (Redis restarted without persistence)."""
        for worker in self.pipe.workers:
            worker.pause()
        try:
            self.pipe.relay.run_once()
            self.pipe.broker.flush_all()
        finally:
            for worker in self.pipe.workers:
                worker.resume()

    def _send_only(self, kind: str) -> None:
        """Claim every due row but send only one kind's jobs now; the others wait."""
        rows = self.pipe.repo.claim(500)
        sent: set[int] = set()
        for job in plan_jobs(rows):
            if job.kind == kind:
                self.pipe.actor.send(job.kind, list(job.target_ids), list(job.row_ids), job.payload)
                sent.update(job.row_ids)
        self.pipe.repo.release([row.id for row in rows if row.id not in sent])

    def _settle(self) -> None:
        """A quiet moment: everything drains."""
        self.settle()

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def _expect_done(self, kind: str) -> None:
        """Every row of ``kind`` so far is done (a check inside a hard case)."""
        rows = [row for row in self.pipe.rows() if row["target_kind"] == kind]
        assert {row["status"] for row in rows} <= {Status.DONE}, rows

    def _replay(self) -> None:
        """The faults clear and an operator replays the failed rows."""
        self.clear_faults()
        replay(
            self.pipe.engine,
            actor="property-test",
            filters=Filters(status=Status.FAILED),
            per_second=1000,
        )

    def lift_rate_limits(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for endpoint, until in list(self.rate_limited.items()):
            if now >= until:
                self.pipe.emu.set_rate_limit(endpoint, None)
                del self.rate_limited[endpoint]

    def clear_faults(self) -> None:
        self.pipe.emu.clear_faults()
        self.lift_rate_limits(now=float("inf"))

    def settle(self, timeout: float = SETTLE_SECONDS) -> None:
        """Relay, sweep and work until no row is pending or dispatched and no job is left."""
        pipe = self.pipe
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.lift_rate_limits()
            pipe.relay.drain()
            pipe.relay.sweep()
            try:
                pipe.broker.join(pipe.settings.queue_name, timeout=250)
            except QueueJoinTimeout:
                continue
            stats = pipe.repo.stats()
            if stats.pending == 0 and stats.dispatched == 0:
                return
            time.sleep(0.02)
        raise AssertionError(f"the outbox did not drain in {timeout}s: {pipe.repo.stats()}")


def reset(pipe: Pipeline) -> None:
    """A fresh example: no job left, empty tables, an empty emulator, no cached state."""
    try:
        pipe.broker.join(pipe.settings.queue_name, timeout=30_000)
    finally:
        pipe.broker.flush_all()
    pipe.emu.reset()
    pipe.emu.set_window(1.0)
    tables = [*outbox_metadata.sorted_tables, *Base.metadata.sorted_tables]
    with pipe.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(t.name for t in tables)} RESTART IDENTITY CASCADE"))
    redis = Redis.from_url(pipe.settings.redis_url)
    try:
        for pattern in ("known_users", "lock:*", "rate:*"):
            keys = list(redis.scan_iter(f"{REDIS_PREFIX}:{pattern}", count=1000))
            if keys:
                redis.delete(*keys)
    finally:
        redis.close()
    pipe.relay.visibility_timeout = pipe.settings.visibility_timeout.total_seconds()


def rows_by_status(pipe: Pipeline) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in pipe.rows():
        found.setdefault(row["status"], []).append(row)
    return found


def differences(pipe: Pipeline, app: AppModel) -> list[str]:
    desired = read_desired(
        pipe.engine, REFERENCE_BINDING, pipe.repo, gone=[str(c) for c in app.conversations]
    )
    return [str(d) for d in compare(desired=desired, held=held_from_snapshot(pipe.emu.state()))]


# -- the property -----------------------------------------------------------------------


def search_settings(examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The property's hypothesis settings with ``examples`` examples (seeded by ``SEED``)."""

    def apply(test: Callable[..., None]) -> Callable[..., None]:
        chosen = settings(
            max_examples=examples,
            deadline=None,
            derandomize=SEED is None,
            database=None,
            print_blob=True,
            suppress_health_check=[
                HealthCheck.function_scoped_fixture,
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
            ],
        )(test)
        return seed(int(SEED))(chosen) if SEED is not None else chosen

    return apply


def check_convergence(
    pipeline: Pipeline, sessions: Callable[[], Session], steps: list[tuple[Any, ...]]
) -> None:
    """One example: the preamble and ``steps`` through ``sessions``, then the property's checks."""
    reset(pipeline)
    world = World(pipeline, AppModel(sessions))
    world.app.transaction(PREAMBLE)
    for step in steps:
        world.step(step)
    world.settle()

    by_status = rows_by_status(pipeline)
    note(f"rows by status after draining: { {k: len(v) for k, v in by_status.items()} }")
    assert not by_status.get(Status.PENDING) and not by_status.get(Status.DISPATCHED)
    for row in by_status.get(Status.FAILED, []):
        error = row["last_error"] or ""
        assert not error.startswith("after "), f"transient faults exhausted retries: {row}"
        assert "HTTP 4" in error and "HTTP 429" not in error, f"not a permanent error: {row}"
    if by_status.get(Status.FAILED):
        assert world.rejections, f"failed rows with no permanent error injected: {by_status}"

    # The fault clears; a replay of the failed rows converges them.
    world.step(("replay",))
    world.settle()
    statuses = {row["status"] for row in pipeline.rows()}
    assert statuses <= {Status.DONE}, rows_by_status(pipeline)
    assert differences(pipeline, world.app) == []


# Dramatiq's worker threads use the global ``random`` (backoff jitter, maintenance) while
# hypothesis draws the next example; hypothesis takes that for a strategy using it.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@pytest.mark.timeout(max(120, EXAMPLES * 15))
@search_settings(EXAMPLES)
@given(steps=STEPS)
@example(steps=RESTORED)
def test_stream_converges_on_the_database_whatever_happens(
    pipeline_under_faults: Pipeline,
    session_factory: Callable[[], Session],
    steps: list[tuple[Any, ...]],
) -> None:
    check_convergence(pipeline_under_faults, session_factory, steps)
