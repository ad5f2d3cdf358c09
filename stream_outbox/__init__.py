"""stream-outbox: keep GetStream Chat in step with an application's PostgreSQL database.

The application imports its public names from here::

    from stream_outbox import Binding, install

The parts live in rooms below this one root: ``stream_outbox.app_hooks`` (imported by
the application: tables, capture, the binding), ``stream_outbox.worker`` (the relay, the
Dramatiq actors, the admin tools and dashboard), ``stream_outbox.migrations`` (Alembic,
with its own version table) and ``stream_outbox.emulator`` (a local Stream server for
tests and demos). Importing this package loads SQLAlchemy only, as ``app_hooks`` does.
"""

from stream_outbox.app_hooks import (
    Binding,
    Change,
    DesiredChannel,
    DesiredUser,
    Migration,
    MigrationState,
    Status,
    Target,
    TargetKind,
    install,
    migration_status,
    request_migration,
    write_changes,
)

__all__ = [
    "Binding",
    "Change",
    "DesiredChannel",
    "DesiredUser",
    "Migration",
    "MigrationState",
    "Status",
    "Target",
    "TargetKind",
    "install",
    "migration_status",
    "request_migration",
    "write_changes",
]
