"""Apply the outbox schema with Alembic (``stream-outbox migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from app_hooks.outbox import schema_revision
from worker.errors import ConfigurationError

__all__ = ["alembic_config", "require_migrated", "upgrade"]

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str, connection: Connection | None = None) -> Config:
    """An Alembic config for our migrations, without an ``alembic.ini``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade the outbox schema to ``revision``; a no-op when already there."""
    command.upgrade(alembic_config(database_url), revision)


def require_migrated(engine: Engine) -> None:
    """Refuse, in one line, to run on an outbox schema older than this version's
    migrations (new code reading columns a deploy did not add yet); a newer schema (the
    code rolled back after ``migrate``) is fine: migrations only add."""
    with engine.connect() as conn:
        current = schema_revision(conn)
    if current is None:
        return  # made without Alembic (metadata.create_all): nothing to compare
    scripts = ScriptDirectory.from_config(alembic_config(""))
    head = scripts.get_current_head()
    known = {script.revision for script in scripts.walk_revisions()}
    if current != head and current in known:
        raise ConfigurationError(
            f"the outbox schema is at migration {current}, this version needs "
            f"{head}: run `stream-outbox migrate` first"
        )
