"""Pipeline fixtures: real PostgreSQL, real Redis, the emulator over HTTP, in-process workers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dramatiq
import pytest
from redis import Redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import install, outbox
from stream_outbox.emulator import Emulator
from stream_outbox.worker import runtime
from stream_outbox.worker.pipeline.broker import build_broker, declare_actors
from stream_outbox.worker.pipeline.relay import Relay
from stream_outbox.worker.settings import Settings
from stream_outbox.worker.store.repository import OutboxRepository, OutboxRow
from tests.conftest import API_KEY, API_SECRET, REDIS_PREFIX, clear_redis


@pytest.fixture()
def settings(database_url: str, redis_url: str, emu: Emulator) -> Settings:
    # The worker does not pace itself here (stream_limits=False below): the emulator
    # does not apply Stream's limits either, or bursts would be 429s retried until
    # max_retries runs out. A test sets the limits it is about (reset() restores them).
    emu.set_stream_limits(False)
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        getstream_api_key=API_KEY,
        getstream_api_secret=API_SECRET,
        stream_chat_url=emu.base_url,
        stream_timeout=2.0,
        max_retries=4,
        min_backoff_ms=20,
        max_backoff_ms=200,
        visibility_timeout=60,
        redis_prefix=REDIS_PREFIX,
        stream_limits=False,  # no pacing here: the budget has tests of its own
    )


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
        redis = Redis.from_url(self.settings.redis_url)
        queues = {k.decode(): redis.type(k).decode() for k in redis.keys(f"{REDIS_PREFIX}:*")}
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


@pytest.fixture()
def pipeline(settings: Settings, clean_db: Engine, emu: Emulator) -> Iterator[Pipeline]:
    clear_redis(settings.redis_url)
    broker = build_broker(settings)
    dramatiq.set_broker(broker)
    actor = declare_actors(broker, settings)
    rt = runtime.Runtime.from_settings(settings)
    runtime.install(rt)
    repo = OutboxRepository(clean_db)
    relay = Relay(repo, actor, batch_size=500, poll_interval=0.05, visibility_timeout=60)
    pipe = Pipeline(settings, broker, actor, relay, repo, clean_db, emu, [])
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
        clear_redis(settings.redis_url)


@pytest.fixture()
def app_session(clean_db: Engine) -> Callable[[], Session]:
    """Sessions of the application, with capture installed."""
    factory = sessionmaker(clean_db, expire_on_commit=False)
    install(factory)
    return factory
