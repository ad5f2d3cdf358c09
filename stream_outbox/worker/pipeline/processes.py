"""The long-running processes: ``stream-outbox relay`` and ``stream-outbox worker``.

Both stop cleanly on SIGTERM or SIGINT, however many arrive: a Procfile runner
(honcho, Heroku) signals the whole process group, and a second signal must not
turn a clean shutdown into a kill. The worker finishes its in-flight jobs and
hands prefetched messages back to Redis before it exits.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import dramatiq

from stream_outbox.worker import runtime
from stream_outbox.worker.app_binding import check_tables, resolve_binding
from stream_outbox.worker.health import Check, Heartbeat, Readiness, serve, threads_alive
from stream_outbox.worker.pipeline.broker import build_broker, declare_actors, priority_queue_name
from stream_outbox.worker.pipeline.relay import Relay
from stream_outbox.worker.settings import Settings
from stream_outbox.worker.store.repository import OutboxRepository
from stream_outbox.worker.store.schema import require_migrated

__all__ = ["QUEUES", "build_workers", "run_relay", "run_worker", "stop_on_signals"]

log = logging.getLogger(__name__)
_SHUTDOWN_TIMEOUT_MS = 30_000
# The relay is not alive once its loop has not passed for this long (or ten poll intervals)
_RELAY_STALE_SECONDS = 60.0


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (logged once), from now on: the process then ends
    its work in hand and shuts down, rather than die by the default handler."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            log.info("%s received: shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _serve_metrics(settings: Settings, liveness: Callable[[], Check], *, stream: bool) -> None:
    """Metrics, liveness and readiness on the metrics port (when one is set)."""
    port = settings.metrics_port
    if port:
        readiness = Readiness(settings, require_stream=stream)
        serve(port, liveness, readiness.check, host=settings.metrics_host)
        log.info(
            "metrics on http://%s:%d/metrics (health: /healthz, /readyz)",
            settings.metrics_host,
            port,
        )


class _BeatingRelay(Relay):
    """The relay, beating a heartbeat at each pass of its loop (its liveness)."""

    def __init__(
        self,
        repo: OutboxRepository,
        actor: dramatiq.Actor[Any, Any],
        *,
        heartbeat: Heartbeat,
        **options: Any,
    ) -> None:
        super().__init__(repo, actor, **options)
        self.heartbeat = heartbeat

    def run_once(self) -> int:
        """Beat, then claim, enqueue and settle one batch."""
        self.heartbeat.beat()
        return super().run_once()


def run_relay(settings: Settings, *, listen: bool = True) -> None:
    """Run the relay until SIGTERM/SIGINT (``listen=False``: poll only)."""
    from sqlalchemy import create_engine

    engine = create_engine(settings.database_url, pool_pre_ping=True)
    require_migrated(engine)
    resolve_binding(engine, settings.binding)  # refuse a wrong binding now, not in a worker
    broker = build_broker(settings)
    actor = declare_actors(broker, settings)
    poll = settings.relay_poll_interval.total_seconds()
    heartbeat = Heartbeat("relay", max_age=max(_RELAY_STALE_SECONDS, 10 * poll))
    relay = _BeatingRelay(
        OutboxRepository(engine),
        actor,
        batch_size=settings.relay_batch_size,
        poll_interval=poll,
        visibility_timeout=settings.visibility_timeout.total_seconds(),
        conversations_per_job=settings.conversations_per_job,
        listen=listen,
        heartbeat=heartbeat,
    )
    stop = threading.Event()
    stop_on_signals(stop)
    _serve_metrics(settings, heartbeat.check, stream=False)

    def stop_relay_on_signal() -> None:
        stop.wait()
        relay.stop()

    threading.Thread(target=stop_relay_on_signal, daemon=True).start()
    try:
        relay.run()
    finally:
        engine.dispose()
        broker.close()


QUEUES = ("all", "backlog", "priority")


def run_worker(settings: Settings, queue: str = "all") -> None:
    """Run one worker process (Dramatiq threads) until SIGTERM/SIGINT, then drain cleanly.

    ``queue``: ``all`` (the backlog's threads and those kept for the priority queue),
    ``backlog`` or ``priority`` only (a process of its own for on-demand migrations).
    """
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}: use all, backlog or priority")
    rt = runtime.Runtime.from_settings(settings)
    require_migrated(rt.engine)
    check_tables(rt.engine, rt.binding, path=settings.binding)
    broker = build_broker(settings)
    dramatiq.set_broker(broker)
    declare_actors(broker, settings)
    runtime.install(rt)
    stop = rt.stopping  # in-flight batches see it too, and hand their rest to a new job
    stop_on_signals(stop)
    workers = build_workers(broker, settings, queue)
    for worker in workers:
        worker.start()
    _serve_metrics(settings, lambda: _workers_alive(workers), stream=True)
    log.info(
        "worker started: %s",
        "; ".join(f"{w.worker_threads} threads on {_queues(w, settings)}" for w in workers),
    )
    stop.wait()
    log.info("finishing in-flight jobs and returning prefetched messages")
    for worker in workers:
        worker.stop(timeout=_SHUTDOWN_TIMEOUT_MS)
    broker.close()
    log.info("worker stopped")


def _workers_alive(workers: list[dramatiq.Worker]) -> Check:
    """Alive while every consumer and worker thread of the Dramatiq workers runs."""

    def threads() -> list[threading.Thread]:
        return [t for w in workers for t in [*w.consumers.values(), *w.workers]]

    return threads_alive("worker", threads)


def build_workers(broker: dramatiq.Broker, settings: Settings, queue: str) -> list[dramatiq.Worker]:
    """The Dramatiq workers of this process: the backlog's threads, and those kept for the
    priority queue (``priority_threads``; none: the backlog's threads take both queues and
    run priority jobs first among those they hold).

    A thread kept for the priority queue starts an on-demand migration as soon as it
    arrives instead of waiting for one of the backlog's jobs to end.
    """
    backlog, priority = {settings.queue_name}, {priority_queue_name(settings)}
    if queue == "priority":
        return [_worker(broker, settings, settings.priority_threads or 2, priority)]
    if queue == "backlog" or not settings.priority_threads:
        queues = backlog if queue == "backlog" else None
        return [_worker(broker, settings, settings.worker_threads, queues)]
    return [
        _worker(broker, settings, settings.worker_threads, backlog),
        _worker(broker, settings, settings.priority_threads, priority),
    ]


def _worker(
    broker: dramatiq.Broker, settings: Settings, threads: int, queues: set[str] | None
) -> dramatiq.Worker:
    return dramatiq.Worker(
        broker, worker_threads=threads, worker_timeout=settings.worker_timeout_ms, queues=queues
    )


def _queues(worker: dramatiq.Worker, settings: Settings) -> str:
    names = worker.consumer_whitelist or {settings.queue_name, priority_queue_name(settings)}
    return ", ".join(sorted(names))
