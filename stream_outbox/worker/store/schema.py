"""The outbox schema the code needs: a process refuses, in one line, to run on an older one."""

from __future__ import annotations

from sqlalchemy import Engine

from stream_outbox.app_hooks.outbox import SCHEMA_REVISION, older_than_code, schema_revision
from stream_outbox.worker.errors import ConfigurationError

__all__ = ["require_migrated"]


def require_migrated(engine: Engine) -> None:
    """Refuse, in one line, to run on an outbox schema older than this version's
    migrations (new code reading columns a deploy did not add yet); a newer schema (the
    code rolled back after ``migrate``: migrations only add), one made without Alembic or
    one this role may not read the version of are accepted."""
    with engine.connect() as conn:
        current = schema_revision(conn)
    if older_than_code(current):
        raise ConfigurationError(
            f"the outbox schema is at migration {current}, this version needs "
            f"{SCHEMA_REVISION}: run `stream-outbox migrate` first"
        )
