"""What Stream should hold, as the binding reads it from the application's database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stream_outbox.app_hooks.channel_ids import CHANNEL_TYPE, ChannelFacts

__all__ = [
    "DesiredChannel",
    "DesiredMessage",
    "DesiredUser",
    "desired_channel",
    "stream_message_id",
]


@dataclass(frozen=True)
class DesiredUser:
    """What Stream should hold for one user."""

    id: str
    name: str
    image: str | None

    def as_stream(self) -> dict[str, Any]:
        """The user object sent to Stream's upsert."""
        user: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.image:
            user["image"] = self.image
        return user


@dataclass(frozen=True)
class DesiredChannel:
    """What Stream should hold for one conversation's channel (its id comes from the map)."""

    conversation_id: str
    facts: ChannelFacts
    members: tuple[str, ...]
    data: dict[str, Any]
    created_by: str | None
    channel_type: str = CHANNEL_TYPE


@dataclass(frozen=True)
class DesiredMessage:
    """A message of the application as Stream should hold it (id derived from the database's)."""

    id: str
    conversation_id: str
    sender_id: str | None
    text: str
    created_at: datetime | None

    def stream_id(self, generation: int = 0) -> str:
        """The deterministic Stream message id in its channel's ``generation``: re-runs
        and replays never duplicate."""
        return stream_message_id(self.id, generation)


def stream_message_id(message_id: str, generation: int = 0) -> str:
    """The Stream id of the application's message ``message_id``: ``msg-{id}``, and
    ``msg{generation}-{id}`` in a channel created again after Stream deleted it (Stream
    refuses an id it held, even deleted). The two forms never collide."""
    return f"msg-{message_id}" if generation == 0 else f"msg{generation}-{message_id}"


def desired_channel(
    cid: str,
    members: tuple[str, ...],
    invitation: tuple[str, str, str, str] | None,
    proposal: tuple[str, str, str, str] | None,
    legacy: bool,
) -> DesiredChannel:
    """A conversation's channel: members, and name and creator from its event (if any)."""
    data: dict[str, Any] = {"conversation_id": cid}
    created_by = members[0] if members else None
    origin = invitation or proposal
    if origin is not None:
        _, creator, title, event_id = origin
        data.update(name=title, event_id=event_id)
        created_by = creator
    facts = ChannelFacts(
        conversation_id=cid,
        invitation_id=invitation[0] if invitation else None,
        proposal_id=proposal[0] if proposal else None,
        member_ids=members,
        legacy=legacy,
    )
    return DesiredChannel(cid, facts, members, data, created_by)
