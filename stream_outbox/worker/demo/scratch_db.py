"""Scratch databases: a new PostgreSQL database for a demo, a test run or a benchmark."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

__all__ = ["scratch_database"]


@contextmanager
def scratch_database(
    server_url: str, prefix: str, *, connect_timeout: int | None = None
) -> Iterator[str]:
    """Create ``{prefix}_{random}`` on the server ``server_url`` names; yield its URL; drop it.

    The drop forces other sessions out (PostgreSQL 13 and later), so a crashed
    worker's connections never keep the database alive.
    """
    args = {"connect_timeout": connect_timeout} if connect_timeout else {}
    admin = create_engine(
        server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args=args
    )
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            version = conn.dialect.server_version_info or (0,)
        force = " WITH (FORCE)" if version >= (13,) else ""
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"{force}'))
    finally:
        admin.dispose()
