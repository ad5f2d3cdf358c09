"""Alembic environment of stream-outbox: its own version table, beside the app's history."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from stream_outbox.app_hooks.outbox import VERSION_TABLE, metadata


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    # Compare only our own tables: the application's live in the same database.
    return type_ != "table" or name in metadata.tables


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations() -> None:
    """Run against the connection handed in by the caller, else the configured URL."""
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or ""
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)


run_migrations()
