"""Script-local processes the benchmarks compare the product with.

    python -m benchmarks.procs relay --no-listen   # the real relay, polling only
    python -m benchmarks.procs floor-worker        # dequeue and mark done, no Stream call
    python -m benchmarks.procs naive-relay         # one job per row, no coalescing
    python -m benchmarks.procs naive-worker        # one row per job, plain SDK calls

Settings come from the environment, as for ``stream-outbox``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from typing import Any

import dramatiq
from sqlalchemy import create_engine

from stream_outbox.app_hooks import reads
from stream_outbox.worker import runtime
from stream_outbox.worker.pipeline.broker import ACTOR_NAME, build_broker
from stream_outbox.worker.pipeline.processes import run_relay
from stream_outbox.worker.settings import Settings, load_settings
from stream_outbox.worker.store.repository import OutboxRepository

NAIVE_ACTOR = "naive_sync"
log = logging.getLogger("benchmarks.procs")


def _stop_event() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def _serve(broker: dramatiq.Broker, settings: Settings) -> None:
    stop = _stop_event()
    worker = dramatiq.Worker(
        broker, worker_threads=settings.worker_threads, worker_timeout=settings.worker_timeout_ms
    )
    worker.start()
    log.info("worker started")
    stop.wait()
    worker.stop(timeout=30_000)
    broker.close()


def floor_worker(settings: Settings) -> None:
    """The bare path's worker: the reconcile actor's message, rows marked done, nothing else."""
    broker = build_broker(settings)
    dramatiq.set_broker(broker)
    repo = OutboxRepository(create_engine(settings.database_url, pool_size=10))

    def bare(kind: str, target_ids: list[str], row_ids: list[int], payload: dict[str, Any]) -> None:
        repo.mark_done(row_ids)

    dramatiq.Actor(
        bare,
        actor_name=ACTOR_NAME,
        queue_name=settings.queue_name,
        broker=broker,
        priority=0,
        options={},
    )
    _serve(broker, settings)


def naive_worker(settings: Settings) -> None:
    """One job per row: read the target, make its SDK calls, mark the one row done.

    A user is one upsert; a conversation upserts its members and creates the
    channel with them (two calls). No coalescing, batching or caches.
    """
    broker = build_broker(settings)
    dramatiq.set_broker(broker)
    rt = runtime.Runtime.from_settings(settings)

    def naive(kind: str, target_id: str, row_id: int) -> None:
        with rt.engine.connect() as conn:
            if kind == "user":
                users = reads.desired_users(rt.binding, conn, [target_id])
                rt.gateway.upsert_users([u.as_stream() for u in users.values()])
            else:
                channel = reads.desired_channels(rt.binding, conn, [target_id]).get(target_id)
                if channel is not None and channel.created_by is not None:
                    members = reads.desired_users(rt.binding, conn, channel.members)
                    rt.gateway.upsert_users([u.as_stream() for u in members.values()])
                    rt.gateway.get_or_create_channel(
                        "messaging",
                        f"naive_{target_id}",
                        created_by=channel.created_by,
                        members=channel.members,
                        data={},
                    )
        rt.repo.mark_done([row_id])

    dramatiq.Actor(
        naive,
        actor_name=NAIVE_ACTOR,
        queue_name=settings.queue_name,
        broker=broker,
        priority=0,
        options={},
    )
    _serve(broker, settings)


def naive_relay(settings: Settings) -> None:
    """Claim rows as the relay does, but send one message per row."""
    broker = build_broker(settings)
    actor = dramatiq.Actor(
        lambda *args: None,
        actor_name=NAIVE_ACTOR,
        queue_name=settings.queue_name,
        broker=broker,
        priority=0,
        options={},
    )
    repo = OutboxRepository(create_engine(settings.database_url))
    stop = _stop_event()
    log.info("relay started")
    while not stop.is_set():
        rows = repo.claim(settings.relay_batch_size)
        for row in rows:
            actor.send(row.target_kind, row.target_id, row.id)
        if not rows:
            time.sleep(0.05)
    broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["relay", "floor-worker", "naive-relay", "naive-worker"])
    parser.add_argument("--no-listen", action="store_true", help="relay: poll only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_settings()
    if args.role == "relay":
        run_relay(settings, listen=not args.no_listen)
    elif args.role == "floor-worker":
        floor_worker(settings)
    elif args.role == "naive-worker":
        naive_worker(settings)
    else:
        naive_relay(settings)


if __name__ == "__main__":
    main()
