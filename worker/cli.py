"""The ``stream-outbox`` command line."""

from __future__ import annotations

import logging
import sys

import typer
from sqlalchemy.exc import OperationalError

from worker.errors import StreamOutboxError
from worker.settings import load_settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="stream-outbox",
    help="Keep GetStream Chat in step with your PostgreSQL database through an outbox.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Keep GetStream Chat in step with your PostgreSQL database through an outbox."""


@app.command()
def migrate() -> None:
    """Create or upgrade the outbox tables (Alembic, to head) in DATABASE_URL."""
    from worker.migrate import upgrade

    settings = load_settings()
    upgrade(settings.database_url)
    typer.echo("outbox schema is up to date")


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
