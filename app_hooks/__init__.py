"""Application-side hooks of stream-outbox: outbox tables, capture listeners and the binding.

Imported by the application; depends on SQLAlchemy and the standard library only.
"""

from app_hooks.binding import Binding, DesiredChannel, DesiredUser
from app_hooks.capture import install, write_changes
from app_hooks.changes import Change, Target
from app_hooks.outbox import Status, TargetKind, audit, channel_map, metadata, outbox

__all__ = [
    "Binding",
    "Change",
    "DesiredChannel",
    "DesiredUser",
    "Status",
    "Target",
    "TargetKind",
    "audit",
    "channel_map",
    "install",
    "metadata",
    "outbox",
    "write_changes",
]
