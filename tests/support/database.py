"""Scratch databases on the shared PostgreSQL server: made for a test, a run or a benchmark,
dropped after it (forcing other sessions out, so a crashed process never keeps one alive);
a binding's capture triggers installed for a block.

Names start with what they are for and carry the process id, so that a database left
behind by a killed run says whose it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.outbox import metadata as outbox_metadata
from stream_outbox.app_hooks.reference import REFERENCE_BINDING, Base
from stream_outbox.app_hooks.triggers import drop_triggers, install_triggers, triggers_installed
from stream_outbox.worker.demo.scratch_db import scratch_database
from stream_outbox.worker.operations.migrate import upgrade
from tests.support.settings import SERVER_URL

__all__ = [
    "ScratchDatabase",
    "admin_connection",
    "capture_triggers",
    "databases_named",
    "empty_database",
    "empty_tables",
    "outbox_database",
    "server_trouble",
]


@contextmanager
def admin_connection() -> Iterator[Connection]:
    """A connection to the server's maintenance database, outside any transaction."""
    engine = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def server_trouble() -> str | None:
    """None when the server answers, else one line saying what to start."""
    try:
        with admin_connection() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        url = make_url(SERVER_URL).render_as_string(hide_password=True)
        return (
            f"PostgreSQL does not answer at {url} ({type(exc).__name__}); start it "
            "(pg_ctlcluster <version> main start) or set DATABASE_URL"
        )
    return None


@contextmanager
def empty_database(purpose: str) -> Iterator[str]:
    """A new, empty database (``{purpose}_{pid}_{random}``); its URL; dropped on exit."""
    with scratch_database(SERVER_URL, f"{purpose}_{os.getpid()}") as url:
        yield url


@contextmanager
def outbox_database(purpose: str) -> Iterator[str]:
    """The same, migrated (the outbox's tables) and holding the reference app's tables."""
    with empty_database(purpose) as url:
        upgrade(url)
        engine = create_engine(url)
        Base.metadata.create_all(engine)
        engine.dispose()
        yield url


def empty_tables(engine: Engine) -> None:
    """Empty the outbox's and the reference app's tables (ids restart at 1)."""
    tables = [*outbox_metadata.sorted_tables, *Base.metadata.sorted_tables]
    names = ", ".join(f'"{table.name}"' for table in tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def databases_named(name: str) -> list[str]:
    """``[name]`` when the server holds a database of that name, else ``[]``."""
    with admin_connection() as conn:
        query = text("SELECT datname FROM pg_database WHERE datname = :name")
        return list(conn.scalars(query, {"name": name}))


class ScratchDatabase:
    """An outbox database made and dropped at will, for runs that cut its connections
    (the chaos run) or drop it under running processes (the health probes)."""

    def __init__(self, purpose: str) -> None:
        self.purpose = purpose
        self.url = ""
        self._dropped = ExitStack()

    @property
    def name(self) -> str:
        return str(make_url(self.url).database)

    def create(self) -> None:
        self.url = self._dropped.enter_context(outbox_database(self.purpose))

    def url_for(self, application_name: str) -> str:
        """The database's URL for connections that carry ``application_name``."""
        url = make_url(self.url).update_query_dict({"application_name": application_name})
        return url.render_as_string(hide_password=False)

    def engine(self, application_name: str, **options: object) -> Engine:
        return create_engine(self.url_for(application_name), pool_pre_ping=True, **options)

    def terminate_backends(self, application_name: str) -> int:
        """``pg_terminate_backend`` on the connections that carry ``application_name``;
        how many there were."""
        query = text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = :db AND application_name = :app AND pid <> pg_backend_pid()"
        )
        with admin_connection() as conn:
            return int(conn.scalar(query, {"db": self.name, "app": application_name}) or 0)

    def drop_now(self) -> None:
        """Drop the database under whoever uses it (``drop`` still cleans up after)."""
        with admin_connection() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))

    def drop(self) -> None:
        self._dropped.close()


@contextmanager
def capture_triggers(engine: Engine, binding: Binding = REFERENCE_BINDING) -> Iterator[None]:
    """The binding's capture triggers, installed for the block, always dropped after."""
    with engine.begin() as conn:
        install_triggers(conn, binding)
    try:
        yield
    finally:
        with engine.begin() as conn:
            drop_triggers(conn)
        with engine.connect() as conn:
            assert not triggers_installed(conn), "capture triggers left in the shared database"
