"""``stream-outbox triggers``: capture by database triggers, generated from the binding."""

from __future__ import annotations

import typer

from stream_outbox.app_hooks.triggers import check_triggers, installed_triggers
from stream_outbox.worker.app_binding import load_binding, resolve_binding
from stream_outbox.worker.cli.options import ACTOR, JSON, connected, emit
from stream_outbox.worker.operations import triggers
from stream_outbox.worker.settings import load_settings

__all__ = ["app"]

app = typer.Typer(
    help="Capture every committed change, whoever writes it, by database triggers.",
    no_args_is_help=True,
)

_WAIT = typer.Option(60.0, min=1.0, help="Seconds to keep trying for the tables' locks.")


@app.command("install")
def install(actor: str = ACTOR, wait: float = _WAIT, as_json: bool = JSON) -> None:
    """Install (or replace) the triggers the binding calls for, in one transaction.

    From then on every change that matters writes its outbox row in its own
    transaction, raw SQL and COPY included; session listeners still installed stand by.
    """
    settings = load_settings()
    with connected(settings) as engine:
        binding = resolve_binding(engine, settings.binding)
        tables = triggers.install(engine, binding, actor=actor, wait=wait)
    count = triggers.trigger_count(tables)
    if as_json:
        emit({"tables": [table.label for table in tables], "triggers": count})
    else:
        typer.echo(f"installed {count} capture triggers on {len(tables)} tables")
        for table in tables:
            typer.echo(f"  {table.label}: {', '.join(t.op for t in table.triggers)}")


@app.command("drop")
def drop(actor: str = ACTOR, wait: float = _WAIT, as_json: bool = JSON) -> None:
    """Drop every capture trigger, in one transaction (session listeners capture again)."""
    with connected(load_settings()) as engine:
        count = triggers.drop(engine, actor=actor, wait=wait)
    if as_json:
        emit({"dropped": count})
    else:
        typer.echo(f"dropped {count} capture triggers")


@app.command("check")
def check(as_json: bool = JSON) -> None:
    """Compare the installed triggers with the binding; exit 1 on any drift, naming it.

    Run it after every migration of the app's own: a column renamed under an
    installed trigger makes the app's writes to that table fail until ``install``.
    """
    settings = load_settings()
    # Not checked against the tables first: a column gone is drift to name here.
    binding = load_binding(settings.binding)
    with connected(settings) as engine, engine.connect() as conn:
        drift = check_triggers(conn, binding)
        installed = len(installed_triggers(conn))
    if as_json:
        emit({"installed": installed, "drift": drift})
    elif drift and not installed:
        typer.echo(drift[0])
    elif drift:
        typer.echo(f"capture triggers drift from the binding ({len(drift)}):")
        for line in drift:
            typer.echo(f"  {line}")
    else:
        typer.echo(f"capture triggers match the binding ({installed} triggers)")
    if drift:
        raise typer.Exit(1)
