"""The relay, a worker and their broker in the test's process, against real PostgreSQL,
Redis and the emulator over HTTP (the ``pipeline`` fixtures)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dramatiq
from redis import Redis
from sqlalchemy import Engine, select

from stream_outbox.app_hooks import outbox
from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.outbox import Status
from stream_outbox.app_hooks.reference import REFERENCE_BINDING
from stream_outbox.emulator import Emulator
from stream_outbox.worker import runtime
from stream_outbox.worker.pipeline.broker import build_broker, declare_actors
from stream_outbox.worker.pipeline.relay import Relay
from stream_outbox.worker.settings import Settings
from stream_outbox.worker.store.repository import OutboxRepository, OutboxRow
from stream_outbox.worker.verify.compare import compare
from stream_outbox.worker.verify.readers import held_from_snapshot, read_desired
from tests.support.redis import clear_redis

__all__ = ["Pipeline", "drift", "running_pipeline"]


@dataclass
class Pipeline:
    """The relay, a worker and their broker, in this process, against real services."""

    settings: Settings
    broker: Any
    actor: Any
    relay: Relay
    repo: OutboxRepository
    engine: Engine
    emu: Emulator
    workers: list[dramatiq.Worker]

    def start_worker(self, threads: int = 4) -> dramatiq.Worker:
        worker = dramatiq.Worker(self.broker, worker_threads=threads, worker_timeout=50)
        worker.start()
        self.workers.append(worker)
        return worker

    def send_user_job(self, claimed: Sequence[OutboxRow]) -> None:
        """Send the user rows among ``claimed`` as one job, shaped as the relay plans it."""
        users = [row for row in claimed if row.target_kind == "user"]
        self.actor.send(
            "user",
            [row.target_id for row in users],
            [row.id for row in users],
            {"rows": {row.target_id: [row.id] for row in users}},
        )

    def drain(self, timeout: float = 30.0) -> None:
        """Dispatch and work until no row is pending or dispatched."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.relay.drain()
            self.broker.join(self.settings.queue_name, timeout=int(timeout * 1000))
            stats = self.repo.stats()
            if stats.pending == 0 and stats.dispatched == 0:
                return
            time.sleep(0.02)
        stuck = [r for r in self.rows() if r["status"] in ("pending", "dispatched")][:3]
        redis = Redis.from_url(self.settings.redis_url, decode_responses=True)
        queues = {k: redis.type(k) for k in redis.keys(f"{self.settings.redis_prefix}:*")}
        redis.close()
        raise AssertionError(
            f"outbox did not drain in {timeout}s: {self.repo.stats()}; stuck: {stuck}; "
            f"redis: {queues}"
        )

    def rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(outbox).order_by(outbox.c.id))]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = self.emu.request_counts()["counts"]
        return counts

    @contextmanager
    def bound_to(self, binding: Binding) -> Iterator[None]:
        """The worker reads the app through ``binding`` for the block (a runtime of its own)."""
        previous = runtime.current()
        own = runtime.Runtime.from_settings(self.settings, binding=binding)
        runtime.install(own)
        try:
            yield
        finally:
            runtime.install(previous)
            own.engine.dispose()
            own.redis.close()


def drift(
    pipeline: Pipeline, gone: Sequence[uuid.UUID] = (), binding: Binding = REFERENCE_BINDING
) -> list[str]:
    """Where Stream (the emulator) differs from what the database says, one line each."""
    desired = read_desired(pipeline.engine, binding, pipeline.repo, gone=[str(c) for c in gone])
    held = held_from_snapshot(pipeline.emu.state())
    return [str(d) for d in compare(desired=desired, held=held)]


@contextmanager
def running_pipeline(settings: Settings, engine: Engine, emu: Emulator) -> Iterator[Pipeline]:
    """A pipeline on ``settings`` with one worker running; everything stopped and this
    run's Redis keys deleted on exit."""
    clear_redis(settings.redis_url, settings.redis_prefix)
    broker = build_broker(settings)
    dramatiq.set_broker(broker)
    actor = declare_actors(broker, settings)
    rt = runtime.Runtime.from_settings(settings)
    runtime.install(rt)
    repo = OutboxRepository(engine)
    relay = Relay(repo, actor, batch_size=500, poll_interval=0.05, visibility_timeout=60)
    pipe = Pipeline(settings, broker, actor, relay, repo, engine, emu, [])
    pipe.start_worker()
    try:
        yield pipe
    finally:
        for worker in pipe.workers:
            worker.stop(timeout=5000)
        broker.close()
        runtime.reset()
        rt.engine.dispose()
        rt.redis.close()
        clear_redis(settings.redis_url, settings.redis_prefix)


def settle(pipeline: Pipeline, timeout: float = 60.0) -> None:
    """Dispatch and work until no row is due or in flight (rechecks may wait, not yet due)."""
    due = select(outbox.c.id).where(
        outbox.c.status.in_((Status.PENDING, Status.DISPATCHED)),
        outbox.c.available_at <= datetime.now(UTC),
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pipeline.relay.drain()
        pipeline.broker.join(pipeline.settings.queue_name, timeout=int(timeout * 1000))
        with pipeline.engine.connect() as conn:
            if conn.execute(due.limit(1)).first() is None:
                return
        time.sleep(0.05)
    raise AssertionError(f"rows still due after {timeout}s: {pipeline.repo.stats()}")
