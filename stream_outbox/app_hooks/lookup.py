"""Channel lookup for the frontend: a conversation's Stream channel and whether it is synced."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.channel_ids import InvalidStreamId, choose_channel_id
from stream_outbox.app_hooks.default_binding import binding_or_reference
from stream_outbox.app_hooks.outbox import Status, channel_map, outbox

__all__ = ["ChannelLookup", "channel_for_conversation"]


@dataclass(frozen=True)
class ChannelLookup:
    """Where a conversation lives in Stream.

    ``synced`` is true once its channel exists (an id is assigned) and no change of
    the conversation waits in the outbox; before the first sync ``channel_id`` is
    the id the naming rules predict.
    """

    conversation_id: str
    channel_type: str
    channel_id: str
    synced: bool

    @property
    def cid(self) -> str:
        """Stream's ``type:id``."""
        return f"{self.channel_type}:{self.channel_id}"


def channel_for_conversation(
    conn: Connection, conversation_id: str, binding: Binding | None = None
) -> ChannelLookup | None:
    """The conversation's channel, or None when the conversation does not exist."""
    bound = binding_or_reference(binding)
    desired = reads.desired_channels(bound, conn, [conversation_id]).get(conversation_id)
    if desired is None:
        return None
    row = conn.execute(
        select(
            channel_map.c.channel_type, channel_map.c.channel_id, channel_map.c.deleted_at
        ).where(channel_map.c.conversation_id == conversation_id)
    ).first()
    if row is None:
        try:
            predicted = choose_channel_id(desired.facts)
        except InvalidStreamId:
            return None
        return ChannelLookup(conversation_id, desired.channel_type, predicted, False)
    waiting = conn.scalar(
        select(func.count())
        .select_from(outbox)
        .where(
            outbox.c.target_kind == "conversation",
            outbox.c.target_id == conversation_id,
            outbox.c.status != Status.DONE,
        )
    )
    synced = not waiting and row.deleted_at is None  # deleted: created again at its reconcile
    return ChannelLookup(conversation_id, row.channel_type, row.channel_id, synced)
