"""Channel lookup for the frontend: a conversation's Stream channel and whether it is synced.

Synced means Stream holds the channel: the channel map tells an id assigned (by the
live path just before it creates the channel, or by a history export whose import is
still to come) from a channel created in Stream (``in_stream_at``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.channel_ids import (
    InvalidStreamId,
    choose_channel_id,
    fallback_channel_id,
)
from stream_outbox.app_hooks.default_binding import binding_or_reference
from stream_outbox.app_hooks.desired import DesiredChannel
from stream_outbox.app_hooks.outbox import EXPORT_ACTION, Status, audit, channel_map, outbox

__all__ = [
    "OPEN_STATUSES",
    "ChannelLookup",
    "MappedChannel",
    "channel_for_conversation",
    "legacy_by_open_rows",
    "mapped_channel",
    "predicted_channel_id",
]

# The statuses of a row not settled yet
OPEN_STATUSES = (Status.PENDING.value, Status.DISPATCHED.value)


@dataclass(frozen=True)
class MappedChannel:
    """A conversation's channel map entry: its channel, whether Stream holds it (created
    and not deleted), and whether a Stream import still to complete carries it."""

    channel_type: str
    channel_id: str
    in_stream: bool
    pending_import: bool


def mapped_channel(conn: Connection, conversation_id: str) -> MappedChannel | None:
    """The conversation's channel map entry, if it has one."""
    row = conn.execute(
        select(
            channel_map.c.channel_type,
            channel_map.c.channel_id,
            channel_map.c.deleted_at,
            channel_map.c.in_stream_at,
            channel_map.c.exported_in,
        ).where(channel_map.c.conversation_id == conversation_id)
    ).first()
    if row is None:
        return None
    in_stream = row.in_stream_at is not None and row.deleted_at is None
    pending = not in_stream and _import_pending(conn, row.exported_in)
    return MappedChannel(row.channel_type, row.channel_id, in_stream, pending)


def _import_pending(conn: Connection, exported_in: Any) -> bool:
    """Whether ``exported_in`` is the current history export (the latest not abandoned)
    and its import is not complete."""
    if exported_in is None:
        return False
    rows = conn.execute(
        select(audit.c.id, audit.c.detail)
        .where(audit.c.action == EXPORT_ACTION, audit.c.id >= exported_in)
        .order_by(audit.c.id.desc())
    ).all()
    current = next((row for row in rows if "abandoned_at" not in row.detail), None)
    return current is not None and current.id == exported_in and "imported_at" not in current.detail


@dataclass(frozen=True)
class ChannelLookup:
    """Where a conversation lives in Stream.

    ``synced`` is true once Stream holds its channel and no change of the conversation
    waits in the outbox; before the first sync ``channel_id`` is the id the naming rules
    predict. ``pending_import``: a Stream import still to complete brings the channel.
    """

    conversation_id: str
    channel_type: str
    channel_id: str
    synced: bool
    pending_import: bool = False

    @property
    def cid(self) -> str:
        """Stream's ``type:id``."""
        return f"{self.channel_type}:{self.channel_id}"


def channel_for_conversation(
    conn: Connection, conversation_id: str, binding: Binding | None = None
) -> ChannelLookup | None:
    """The conversation's channel, or None when the conversation does not exist."""
    bound = binding_or_reference(binding)
    row = mapped_channel(conn, conversation_id)
    if row is None:
        legacy = legacy_by_open_rows(_open_payloads(conn, conversation_id))
        desired = reads.desired_channels(bound, conn, [conversation_id], legacy=legacy)
        found = desired.get(conversation_id)
        predicted = None if found is None else predicted_channel_id(conn, found)
        if found is None or predicted is None:
            return None
        return ChannelLookup(conversation_id, found.channel_type, predicted, False)
    if conversation_id not in reads.desired_channels(bound, conn, [conversation_id]):
        return None
    waiting = conn.scalar(
        select(func.count())
        .select_from(outbox)
        .where(
            outbox.c.target_kind == "conversation",
            outbox.c.target_id == conversation_id,
            outbox.c.status != Status.DONE,
        )
    )
    synced = not waiting and row.in_stream  # deleted: created again at its reconcile
    return ChannelLookup(
        conversation_id, row.channel_type, row.channel_id, synced, row.pending_import
    )


def legacy_by_open_rows(open_payloads: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the worker will take a conversation with no channel yet as legacy: as its
    open outbox rows say (a backfill's row does), or, with none open, as one that existed
    before go-live (capture has written nothing for it since)."""
    if not open_payloads:
        return True
    return any(payload.get("legacy") for payload in open_payloads)


def predicted_channel_id(conn: Connection, desired: DesiredChannel) -> str | None:
    """The id the worker will assign: the preferred one, or the fallback when another
    conversation holds the preferred one already; None when Stream would take neither."""
    try:
        preferred = choose_channel_id(desired.facts)
    except InvalidStreamId:
        return None
    owner = conn.scalar(
        select(channel_map.c.conversation_id).where(
            channel_map.c.channel_type == desired.channel_type,
            channel_map.c.channel_id == preferred,
        )
    )
    if owner is None or owner == desired.conversation_id:
        return preferred
    try:
        return fallback_channel_id(desired.conversation_id)
    except InvalidStreamId:
        return None


def _open_payloads(conn: Connection, conversation_id: str) -> list[dict[str, Any]]:
    query = select(outbox.c.payload).where(
        outbox.c.target_kind == "conversation",
        outbox.c.target_id == conversation_id,
        outbox.c.status.in_(OPEN_STATUSES),
    )
    return [p if isinstance(p, dict) else {} for p in conn.scalars(query)]
