"""``stream-outbox inbound``: Stream's webhooks into the app's database, and ``inbound
sync`` to catch up from Stream's own state."""

from __future__ import annotations

import typer

from stream_outbox.worker.cli.options import ACTOR, JSON, connected, emit
from stream_outbox.worker.settings import load_settings

__all__ = ["app"]

app = typer.Typer(
    help="Dual mode both ways: what users do in Stream comes home to the app's database.",
    invoke_without_command=True,
)


@app.callback()
def inbound(
    ctx: typer.Context,
    port: int | None = typer.Option(
        None, help="Port to serve on (default: env OUTBOX_INBOUND_PORT, else 8090)."
    ),
) -> None:
    """Receive Stream's webhooks (POST /stream/webhook) into the inbox and apply them to
    the app's tables, until SIGTERM/SIGINT."""
    if ctx.invoked_subcommand is not None:
        return
    from stream_outbox.worker.inbound.process import run_inbound

    run_inbound(load_settings(), port=port)


@app.command("sync")
def sync(
    since: str = typer.Option(
        None,
        help="Messages at or after this time, ISO 8601 or an age (2h) (default: when the "
        "previous sync started, else the newest event stored; less a minute).",
    ),
    actor: str = ACTOR,
    as_json: bool = JSON,
) -> None:
    """Catch up from Stream's state: channels by last_message_at, then their messages;
    what is found becomes inbox rows (each once), applied by `stream-outbox inbound`."""
    from stream_outbox.worker.inbound.catch_up import sync_from_stream
    from stream_outbox.worker.operations.times import parse_time

    start = parse_time(since) if since else None
    settings = load_settings()
    with connected(settings) as engine:
        found = sync_from_stream(settings, engine, start, actor=actor)
    if as_json:
        emit(
            {
                "since": found.since.isoformat(),
                "channels": found.channels,
                "messages": found.messages,
                "reads": found.reads,
                "stored": found.stored,
            }
        )
    else:
        typer.echo(found.line())
