"""``stream-outbox triggers``: capture by database triggers, generated from the binding."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from typing import TypeVar

import typer
from psycopg.errors import LockNotAvailable
from sqlalchemy import Connection, Engine, create_engine, insert
from sqlalchemy.exc import OperationalError
from tenacity import retry, retry_if_exception, stop_after_delay, wait_random

from stream_outbox.app_hooks.outbox import audit
from stream_outbox.app_hooks.trigger_sql import TableTriggers
from stream_outbox.app_hooks.triggers import (
    TriggerError,
    check_triggers,
    drop_triggers,
    install_triggers,
    installed_triggers,
)
from stream_outbox.worker.app_binding import load_binding, resolve_binding
from stream_outbox.worker.errors import ConfigurationError
from stream_outbox.worker.settings import load_settings

__all__ = ["app"]

app = typer.Typer(
    help="Capture every committed change, whoever writes it, by database triggers.",
    no_args_is_help=True,
)

T = TypeVar("T")
_WAIT = typer.Option(60.0, min=1.0, help="Seconds to keep trying for the tables' locks.")


def _locked_out(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and isinstance(exc.orig, LockNotAvailable)


def in_one_transaction(engine: Engine, work: Callable[[Connection], T], wait: float) -> T:
    """Run ``work`` (which takes the tables' locks with NOWAIT) in one transaction, again
    and again, a few milliseconds apart, until a moment when no app transaction holds
    one of them, for up to ``wait`` seconds.

    Waiting in PostgreSQL's lock queue instead would hold the app's new transactions
    behind the change, and deadlock with one that takes two bound tables in another
    order than the change (the ORM inserts unrelated tables in either order).
    """

    @retry(
        retry=retry_if_exception(_locked_out),
        stop=stop_after_delay(wait),
        wait=wait_random(0, 0.002),
        reraise=True,
    )
    def attempt() -> T:
        with engine.begin() as conn:
            return work(conn)

    try:
        return attempt()
    except OperationalError as exc:
        if _locked_out(exc):
            raise ConfigurationError(
                f"triggers: the app's tables were never all free at once in {wait:g} s; "
                "nothing changed (try again, or with a longer --wait)"
            ) from None
        raise


_ACTOR = typer.Option(None, help="Who runs it, for the audit (default: OS user).")
_JSON = typer.Option(False, "--json", help="Print JSON for scripts.")


@app.command("install")
def install(actor: str = _ACTOR, wait: float = _WAIT, as_json: bool = _JSON) -> None:
    """Install (or replace) the triggers the binding calls for, in one transaction.

    From then on every change that matters writes its outbox row in its own
    transaction, raw SQL and COPY included; session listeners still installed stand by.
    """
    settings = load_settings()
    engine = create_engine(settings.database_url)
    try:
        binding = resolve_binding(engine, settings.binding)

        def work(conn: Connection) -> list[TableTriggers]:
            try:
                tables = install_triggers(conn, binding, nowait=True)
            except TriggerError as exc:
                raise ConfigurationError(f"triggers: {exc}") from None
            count = sum(len(table.triggers) for table in tables)
            _audit(conn, actor, "triggers_install", count, [table.label for table in tables])
            return tables

        tables = in_one_transaction(engine, work, wait)
    finally:
        engine.dispose()
    count = sum(len(table.triggers) for table in tables)
    if as_json:
        typer.echo(json.dumps({"tables": [table.label for table in tables], "triggers": count}))
    else:
        typer.echo(f"installed {count} capture triggers on {len(tables)} tables")
        for table in tables:
            typer.echo(f"  {table.label}: {', '.join(t.op for t in table.triggers)}")


@app.command("drop")
def drop(actor: str = _ACTOR, wait: float = _WAIT, as_json: bool = _JSON) -> None:
    """Drop every capture trigger, in one transaction (session listeners capture again)."""
    engine = create_engine(load_settings().database_url)
    try:

        def work(conn: Connection) -> int:
            count = drop_triggers(conn, nowait=True)
            _audit(conn, actor, "triggers_drop", count, [])
            return count

        count = in_one_transaction(engine, work, wait)
    finally:
        engine.dispose()
    typer.echo(json.dumps({"dropped": count}) if as_json else f"dropped {count} capture triggers")


def _audit(conn: Connection, actor: str | None, action: str, count: int, tables: list[str]) -> None:
    detail = {"triggers": count, "tables": tables}
    who = actor or getpass.getuser()
    conn.execute(insert(audit).values(actor=who, action=action, row_count=count, detail=detail))


@app.command("check")
def check(as_json: bool = _JSON) -> None:
    """Compare the installed triggers with the binding; exit 1 on any drift, naming it.

    Run it after every migration of the app's own: a column renamed under an
    installed trigger makes the app's writes to that table fail until ``install``.
    """
    settings = load_settings()
    engine = create_engine(settings.database_url)
    try:
        # Not checked against the tables first: a column gone is drift to name here.
        binding = load_binding(settings.binding)
        with engine.connect() as conn:
            drift = check_triggers(conn, binding)
            installed = len(installed_triggers(conn))
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps({"installed": installed, "drift": drift}))
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
