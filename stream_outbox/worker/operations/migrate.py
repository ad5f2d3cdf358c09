"""Apply the outbox schema with Alembic (``stream-outbox migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

__all__ = ["alembic_config", "upgrade"]

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str, connection: Connection | None = None) -> Config:
    """An Alembic config for our migrations, without an ``alembic.ini``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(database_url: str, *, revision: str = "head") -> None:
    """Upgrade the outbox schema to ``revision``; a no-op when already there."""
    command.upgrade(alembic_config(database_url), revision)
