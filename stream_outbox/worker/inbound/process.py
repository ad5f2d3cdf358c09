"""``stream-outbox inbound``: the webhook receiver and the runner in one process.

The receiver (uvicorn) stores each webhook and wakes the runner's thread, which applies
it; with ``OUTBOX_INBOUND_SYNC_EVERY`` a third thread catches up from Stream's own state
on that schedule. Beside ``POST /stream/webhook`` the port serves ``/healthz`` (the
runner's loop is alive), ``/readyz`` (the database, Redis and Stream answer) and
``/metrics``. SIGTERM or SIGINT stops the server, then the runner after its batch.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

import uvicorn
from prometheus_client import make_asgi_app
from sqlalchemy import Engine, create_engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from stream_outbox.app_hooks.binding import Binding
from stream_outbox.worker.app_binding import resolve_binding
from stream_outbox.worker.health import Heartbeat, Readiness, Report
from stream_outbox.worker.inbound.receiver import create_receiver
from stream_outbox.worker.inbound.runner import ApplyEvent, Runner
from stream_outbox.worker.pipeline.processes import stop_on_signals
from stream_outbox.worker.settings import Settings
from stream_outbox.worker.store.schema import require_migrated

__all__ = ["build_app", "run_inbound"]

log = logging.getLogger(__name__)
_RUNNER_STALE_SECONDS = 60.0
_POOL = {"pool_size": 10, "max_overflow": 20}


def _report(report: Report, good: str, bad: str) -> Response:
    body = json.dumps(report.as_json(good, bad))
    status = 200 if report.ok else 503
    headers = {"Cache-Control": "no-store"}
    return Response(body, status, headers=headers, media_type="application/json")


def health_routes(heartbeat: Heartbeat, readiness: Callable[[], Report]) -> list[Route | Mount]:
    """``/healthz`` (the runner's heartbeat), ``/readyz`` and ``/metrics``."""

    async def healthz(request: Request) -> Response:
        return _report(Report((heartbeat.check(),)), "alive", "not alive")

    async def readyz(request: Request) -> Response:
        return _report(await run_in_threadpool(readiness), "ready", "not ready")

    return [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Mount("/metrics", make_asgi_app()),
    ]


def build_app(
    settings: Settings,
    engine: Engine,
    binding: Binding,
    apply: ApplyEvent | None = None,
) -> tuple[Starlette, Runner]:
    """The process's ASGI app (receiver, health, metrics) and its runner, not started."""
    poll = settings.relay_poll_interval.total_seconds()
    heartbeat = Heartbeat("inbound runner", max_age=max(_RUNNER_STALE_SECONDS, 10 * poll))
    runner = Runner(
        engine,
        binding,
        apply,
        max_retries=settings.max_retries,
        min_backoff_ms=settings.min_backoff_ms,
        max_backoff_ms=settings.max_backoff_ms,
        poll_interval=poll,
        heartbeat=heartbeat,
    )
    readiness = Readiness(settings)
    routes = health_routes(heartbeat, readiness.check)
    app = create_receiver(settings, engine, on_stored=runner.wake, routes=routes)
    return app, runner


def _sync_on_schedule(settings: Settings, engine: Engine, stop: threading.Event) -> None:
    from stream_outbox.worker.inbound.catch_up import sync_from_stream
    from stream_outbox.worker.runtime import operator_gateway

    every = settings.inbound_sync_every
    gateway = operator_gateway(settings)  # one for every round: its Redis pool is kept
    while not stop.wait(every):
        try:
            found = sync_from_stream(settings, engine, reader=gateway)
            log.info("inbound sync: %s", found.line())
        except Exception:  # Stream or the database away: the next round tries again
            log.exception("inbound sync failed; next in %g s", every)


def run_inbound(settings: Settings, *, port: int | None = None) -> None:
    """Serve the receiver and run the runner until SIGTERM/SIGINT."""
    # SIGTERM and SIGINT set stop from the start: one before the server serves stops it as
    # soon as it has started (uvicorn, which takes the signals while it serves, hands them
    # back once it has shut down, so the runner finishes its batch)
    stop = threading.Event()
    stop_on_signals(stop)
    engine = create_engine(settings.database_url, pool_pre_ping=True, **_POOL)
    require_migrated(engine)
    settings.stream_credentials()  # refuse to start without the key and secret
    binding = resolve_binding(engine, settings.binding)
    app, runner = build_app(settings, engine, binding)
    threads = [threading.Thread(target=runner.run, name="inbound-runner", daemon=True)]
    if settings.inbound_sync_every > 0:
        scheduled = threading.Thread(
            target=_sync_on_schedule, args=(settings, engine, stop), daemon=True
        )
        threads.append(scheduled)
    for thread in threads:
        thread.start()
    host, port = settings.inbound_host, port if port is not None else settings.inbound_port
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", server_header=False, access_log=False
    )
    server = uvicorn.Server(config)
    # a signal before the server serves (or between two of its checks) ends it too
    threading.Thread(target=_stop_server, args=(stop, server), daemon=True).start()
    log.info("inbound: Stream's webhooks on http://%s:%d/stream/webhook", host, port)
    try:
        server.run()
    finally:
        stop.set()
        runner.stop()
        threads[0].join(timeout=30)
        engine.dispose()
        log.info("inbound stopped")


def _stop_server(stop: threading.Event, server: uvicorn.Server) -> None:
    stop.wait()
    server.should_exit = True
