"""Application-side hooks of stream-outbox: outbox tables, capture listeners and the binding.

Imported by the application. The package itself (tables, listeners, binding, channel ids)
needs SQLAlchemy and the standard library only; two optional modules need more:
``app_hooks.tokens`` (Stream user tokens) imports PyJWT, and ``app_hooks.chat_router``
(a FastAPI router for the app's frontend) imports FastAPI. Neither is imported here.
Nothing in it imports the worker, Dramatiq, Redis or the Stream SDK.
"""

from stream_outbox.app_hooks.binding import Binding, DesiredChannel, DesiredUser
from stream_outbox.app_hooks.capture import install, write_changes
from stream_outbox.app_hooks.changes import Change, Target
from stream_outbox.app_hooks.on_demand import (
    Migration,
    MigrationState,
    migration_status,
    request_migration,
)
from stream_outbox.app_hooks.outbox import Status, TargetKind, audit, channel_map, metadata, outbox

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
    "audit",
    "channel_map",
    "install",
    "metadata",
    "migration_status",
    "outbox",
    "request_migration",
    "write_changes",
]
