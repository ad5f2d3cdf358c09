"""Pure decisions: the ids a new channel may take, and the calls that bring a channel
Stream holds in step with the database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from stream_outbox.app_hooks.binding import DesiredChannel
from stream_outbox.app_hooks.channel_ids import (
    InvalidStreamId,
    choose_channel_id,
    fallback_channel_id,
)
from stream_outbox.worker.errors import PermanentStreamError
from stream_outbox.worker.store.repository import ChannelRef

__all__ = [
    "OWNED_CHANNEL_FIELDS",
    "SEE_STREAM_KEY",
    "ChannelPlan",
    "channel_candidates",
    "plan_channel",
]

# A conversation payload's mark: reconcile against Stream itself, not its last answer
# (store.held_channels): rows of an operator or a migration (see pipeline.jobs)
SEE_STREAM_KEY = "see_stream"

# Custom channel fields this product writes; anything else on the channel is left alone.
OWNED_CHANNEL_FIELDS = ("name", "conversation_id", "event_id")


@dataclass(frozen=True)
class ChannelPlan:
    """The calls that bring a channel in step: data to set/unset, members to add/remove."""

    set_data: dict[str, Any] = field(default_factory=dict)
    unset_data: tuple[str, ...] = ()
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """Nothing to do."""
        return not (self.set_data or self.unset_data or self.add or self.remove)


def plan_channel(
    desired: DesiredChannel, members: Iterable[str], data: dict[str, Any]
) -> ChannelPlan:
    """Compare a desired channel with what Stream holds (``members``, ``data``)."""
    held = set(members)
    want = set(desired.members)
    set_data = {
        key: value
        for key, value in desired.data.items()
        if key in OWNED_CHANNEL_FIELDS and data.get(key) != value
    }
    unset = tuple(key for key in OWNED_CHANNEL_FIELDS if key in data and key not in desired.data)
    return ChannelPlan(set_data, unset, tuple(sorted(want - held)), tuple(sorted(held - want)))


def channel_candidates(channel: DesiredChannel) -> list[ChannelRef]:
    """The ids the naming rules allow a new channel, preferred first."""
    try:
        preferred = choose_channel_id(channel.facts)
    except InvalidStreamId as exc:
        raise PermanentStreamError(str(exc), endpoint="channel-id") from None
    candidates = [ChannelRef(channel.channel_type, preferred)]
    try:
        fallback = fallback_channel_id(channel.conversation_id)
    except InvalidStreamId:
        pass  # a conversation id Stream cannot take: the preferred id or nothing
    else:
        candidates.append(ChannelRef(channel.channel_type, fallback))
    return candidates
