"""Reconciling: make Stream hold what the application's database says, one target kind a module.

``users`` upserts and retires users, ``conversations`` creates, updates and deletes
channels and their members, ``messages`` mirrors live messages and ``history``
imports a conversation's older ones; ``plan`` is the pure comparison they act on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stream_outbox.worker.errors import PermanentError
from stream_outbox.worker.sync.result import Result

if TYPE_CHECKING:
    from stream_outbox.worker.runtime import Runtime

__all__ = ["Result", "reconcile"]


def reconcile(rt: Runtime, kind: str, targets: dict[str, dict[str, Any]]) -> Result:
    """Reconcile targets of one kind (users or conversations in batches, one message).

    The reconcilers are imported here, not with the package: the command line's modules
    that need only ``bodies`` or ``plan`` do not pay for the SDK and the runtime.
    """
    from stream_outbox.worker.sync.conversations import reconcile_conversations
    from stream_outbox.worker.sync.messages import mirror_message
    from stream_outbox.worker.sync.users import reconcile_users

    if kind == "user":
        return reconcile_users(rt, list(targets))
    if kind == "conversation":
        return reconcile_conversations(rt, targets)
    if kind == "message":
        message_id, payload = next(iter(targets.items()))
        return mirror_message(rt, message_id, payload)
    raise PermanentError(f"unknown target kind {kind!r}")
