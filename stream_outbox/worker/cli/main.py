"""The ``stream-outbox`` command line."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError, ProgrammingError

from stream_outbox.worker.cli.options import ACTOR, JSON, connected, emit, run_with_progress
from stream_outbox.worker.errors import StreamOutboxError
from stream_outbox.worker.settings import Settings, load_settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="stream-outbox",
    help="Keep GetStream Chat in step with your PostgreSQL database through an outbox.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def backfill(
    since: str = typer.Option(
        None, help="Only conversations created at or after (ISO 8601 or 2h)."
    ),
    until: str = typer.Option(None, help="Only conversations created at or before."),
    conversation: list[str] = typer.Option(None, help="Only these conversation ids (repeat)."),
    history: bool = typer.Option(True, help="Import each conversation's messages too."),
    restart: bool = typer.Option(False, "--restart", help="Start over instead of resuming."),
    actor: str = ACTOR,
    as_json: bool = JSON,
) -> None:
    """Enqueue every existing user and conversation (legacy channels, history); resumable."""
    from stream_outbox.worker.app_binding import resolve_binding
    from stream_outbox.worker.operations.backfill import Scope
    from stream_outbox.worker.operations.times import parse_time

    start, end = (parse_time(since) if since else None), (parse_time(until) if until else None)
    settings = load_settings()
    with connected(settings) as engine:
        binding = resolve_binding(engine, settings.binding)
        scope = Scope(binding, since=start, until=end, only=conversation or None)
        counts = run_with_progress(
            engine,
            binding,
            kinds=scope.kinds(),
            event="backfill",
            payload={"legacy": True, "history": history},
            actor=actor,
            resume=not restart,
            quiet=as_json,
            select_ids=scope.selector(),
            totals=scope.totals(engine),
        )
    if as_json:
        emit({"enqueued": counts})
    else:
        typer.echo(f"enqueued {counts}")


def _add_admin() -> None:
    from stream_outbox.worker.cli.admin import app as admin_app
    from stream_outbox.worker.cli.history import app as history_app
    from stream_outbox.worker.cli.inbound import app as inbound_app
    from stream_outbox.worker.cli.triggers import app as triggers_app

    app.add_typer(admin_app, name="admin")
    app.add_typer(history_app, name="history")
    app.add_typer(inbound_app, name="inbound")
    app.add_typer(triggers_app, name="triggers")


@app.callback()
def _root(
    binding: str | None = typer.Option(
        None,
        "--binding",
        help="Your app's binding, module:attribute (default: env OUTBOX_BINDING, else the "
        "reference app's).",
    ),
) -> None:
    """Keep GetStream Chat in step with your PostgreSQL database through an outbox."""
    if binding is not None:
        # The flag wins over the variable, for this process and the settings it loads.
        os.environ["OUTBOX_BINDING"] = binding


@app.command()
def migrate() -> None:
    """Create or upgrade the outbox tables (Alembic, to head) in DATABASE_URL."""
    from stream_outbox.worker.operations.migrate import upgrade

    settings = load_settings()
    upgrade(settings.database_url)
    typer.echo("outbox schema is up to date")


def settings_with(**flags: Any) -> Settings:
    """The settings, each flag given on the command line winning over its variable."""
    return load_settings(**{name: value for name, value in flags.items() if value is not None})


_METRICS_PORT = typer.Option(
    None, help="Serve Prometheus metrics on this port, 0 off (default: env OUTBOX_METRICS_PORT)."
)


@app.command()
def relay(metrics_port: int | None = _METRICS_PORT) -> None:
    """Drain the outbox into Dramatiq (LISTEN/NOTIFY with polling) until SIGTERM/SIGINT."""
    from stream_outbox.worker.pipeline.processes import run_relay

    run_relay(settings_with(metrics_port=metrics_port))


@app.command()
def worker(
    threads: int | None = typer.Option(
        None, help="Worker threads (default: env OUTBOX_WORKER_THREADS, else 8)."
    ),
    priority_threads: int | None = typer.Option(
        None,
        min=0,
        help="Threads kept for on-demand migrations (default: env OUTBOX_PRIORITY_THREADS, "
        "else 2; 0: shared).",
    ),
    queue: str = typer.Option(
        "all",
        help="all (the backlog, and threads kept for on-demand migrations), backlog, or "
        "priority (a process of its own for on-demand migrations).",
    ),
    metrics_port: int | None = _METRICS_PORT,
) -> None:
    """Run the reconcile actors (one process) until SIGTERM/SIGINT, then drain cleanly."""
    from stream_outbox.worker.pipeline.processes import QUEUES, run_worker

    if queue not in QUEUES:
        raise typer.BadParameter(f"unknown queue {queue!r}: use all, backlog or priority")
    run_worker(
        settings_with(
            worker_threads=threads, priority_threads=priority_threads, metrics_port=metrics_port
        ),
        queue,
    )


@app.command()
def health(
    ready: bool = typer.Option(
        False,
        "--ready",
        help="Readiness: the database, Redis and Stream of the settings answer (default: "
        "liveness, the /healthz of the relay or worker on this machine's metrics port).",
    ),
    port: int | None = typer.Option(
        None, help="The process's metrics port (default: env OUTBOX_METRICS_PORT)."
    ),
    as_json: bool = JSON,
) -> None:
    """Check health: exit 0 healthy, 1 a dependency or the process down, 2 bad configuration."""
    from stream_outbox.worker.errors import ConfigurationError
    from stream_outbox.worker.health import Readiness, ask_liveness

    if ready:
        readiness = Readiness(settings_with(metrics_port=port), cache_seconds=0)
        report, good, bad = readiness.check(), "ready", "not ready"
        readiness.close()
    else:  # liveness needs no other setting than the port
        port = port if port is not None else load_settings().metrics_port
        if not port:
            raise ConfigurationError("OUTBOX_METRICS_PORT is not set: pass --port")
        report, good, bad = ask_liveness(port), "alive", "not alive"
    if as_json:
        emit(report.as_json(good, bad))
    else:
        typer.echo(report.line(good, bad))
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def emulator(
    port: int = typer.Option(8765, help="Port to listen on (127.0.0.1)."),
    api_key: str = typer.Option(None, help="API key clients must send (default: a local one)."),
    api_secret: str = typer.Option(
        None, help="Secret that signs clients' tokens (at least 32 bytes; default: a local one)."
    ),
) -> None:
    """Run the Stream emulator: the Stream Chat REST API on localhost, for the real SDK."""
    from stream_outbox.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, run_cli

    run_cli(port, api_key or DEFAULT_API_KEY, api_secret or DEFAULT_API_SECRET)


@app.command()
def dashboard(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8700, help="Port to listen on."),
) -> None:
    """Serve the admin web dashboard (needs OUTBOX_DASHBOARD_USER/_PASSWORD or _TOKEN)."""
    from stream_outbox.worker.dashboard import serve

    serve(load_settings(), host=host, port=port)


_add_admin()


@app.command()
def demo(
    postgres: bool | None = typer.Option(
        None,
        "--postgres/--sqlite",
        help="PostgreSQL (DATABASE_URL) or SQLite; default: PostgreSQL when it answers.",
    ),
) -> None:
    """Play a story through the reference app and show Stream (an emulator) keeping in step."""
    from stream_outbox.worker.demo import run_demo

    raise typer.Exit(0 if run_demo(postgres) else 1)


def main() -> None:
    """Entry point: run the CLI, turning our errors into one line and exit status 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    try:
        app()
    except StreamOutboxError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        typer.echo(f"error: the database (DATABASE_URL) is unreachable: {reason}", err=True)
        sys.exit(3)
    except RedisConnectionError as exc:  # the shared rate budget of Stream's calls
        reason = (str(exc).strip().splitlines() or [""])[0]
        typer.echo(f"error: Redis (REDIS_URL) is unreachable: {reason}", err=True)
        sys.exit(3)
    except ProgrammingError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        if "stream_outbox" in reason:  # e.g. relation "stream_outbox_channel" does not exist
            reason += ": run stream-outbox migrate"
        typer.echo(f"error: DATABASE_URL: {reason}", err=True)
        sys.exit(2)
