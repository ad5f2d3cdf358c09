"""``stream-outbox triggers``: capture by database triggers, generated from the binding."""

from __future__ import annotations

import getpass
import json

import typer
from sqlalchemy import create_engine, insert

from app_hooks.outbox import audit
from app_hooks.triggers import (
    TriggerError,
    check_triggers,
    drop_triggers,
    install_triggers,
    installed_triggers,
)
from worker.app_binding import resolve_binding
from worker.errors import ConfigurationError
from worker.settings import load_settings

__all__ = ["app"]

app = typer.Typer(
    help="Capture every committed change, whoever writes it, by database triggers.",
    no_args_is_help=True,
)

_ACTOR = typer.Option(None, help="Who runs it, for the audit (default: OS user).")
_JSON = typer.Option(False, "--json", help="Print JSON for scripts.")


@app.command("install")
def install(actor: str = _ACTOR, as_json: bool = _JSON) -> None:
    """Install (or replace) the triggers the binding calls for, in one transaction.

    From then on every change that matters writes its outbox row in its own
    transaction, raw SQL and COPY included; session listeners still installed stand by.
    """
    settings = load_settings()
    engine = create_engine(settings.database_url)
    try:
        binding = resolve_binding(engine, settings.binding)
        with engine.begin() as conn:
            try:
                tables = install_triggers(conn, binding)
            except TriggerError as exc:
                raise ConfigurationError(f"triggers: {exc}") from None
            count = sum(len(table.triggers) for table in tables)
            detail = {"tables": [table.label for table in tables], "triggers": count}
            conn.execute(
                insert(audit).values(
                    actor=actor or getpass.getuser(),
                    action="triggers_install",
                    row_count=count,
                    detail=detail,
                )
            )
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(detail))
    else:
        typer.echo(f"installed {count} capture triggers on {len(tables)} tables")
        for table in tables:
            typer.echo(f"  {table.label}: {', '.join(t.op for t in table.triggers)}")


@app.command("drop")
def drop(actor: str = _ACTOR, as_json: bool = _JSON) -> None:
    """Drop every capture trigger, in one transaction (session listeners capture again)."""
    engine = create_engine(load_settings().database_url)
    try:
        with engine.begin() as conn:
            count = drop_triggers(conn)
            conn.execute(
                insert(audit).values(
                    actor=actor or getpass.getuser(),
                    action="triggers_drop",
                    row_count=count,
                    detail={"triggers": count},
                )
            )
    finally:
        engine.dispose()
    typer.echo(json.dumps({"dropped": count}) if as_json else f"dropped {count} capture triggers")


@app.command("check")
def check(as_json: bool = _JSON) -> None:
    """Compare the installed triggers with the binding; exit 1 on any drift, naming it.

    Run it after every migration of the app's own: a column renamed under an
    installed trigger makes the app's writes to that table fail until ``install``.
    """
    settings = load_settings()
    engine = create_engine(settings.database_url)
    try:
        binding = resolve_binding(engine, settings.binding)
        with engine.connect() as conn:
            drift = check_triggers(conn, binding)
            installed = len(installed_triggers(conn))
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps({"installed": installed, "drift": drift}))
    elif drift:
        typer.echo(f"capture triggers drift from the binding ({len(drift)}):")
        for line in drift:
            typer.echo(f"  {line}")
    else:
        typer.echo(f"capture triggers match the binding ({installed} triggers)")
    if drift:
        raise typer.Exit(1)
