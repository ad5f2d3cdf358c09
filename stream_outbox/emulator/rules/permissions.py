"""Stream's default permissions for client-side (user-token) calls.

"Permissions checking only happens on the client-side calls. Server-side allows
everything" (``docs/app_and_channel_settings/chat_permission_policies.md`` in
GetStream/stream-chat-python). The emulator applies the defaults a ``messaging``
channel grants, for every channel type: a channel member (role ``channel_member``)
may read the channel and send messages ("read-channel", "create-message") and
update or delete its own messages ("update-message-owner", "delete-message-owner");
the channel's creator owns it ("Send Message in Own Channel") and may also change
its data and members. Anyone else gets 403 with code 17 (NotAllowed). A user may
create a channel of its own.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any, Protocol

from stream_outbox.emulator.rules.errors import NOT_ALLOWED, StreamError


class ChannelRecord(Protocol):
    """What a permission check reads of a channel."""

    type: str
    created_by: str

    @property
    def members(self) -> Container[str]:
        """The members' user ids."""


# The endpoints a user token may call; others are server-side only here.
CLIENT_ENDPOINTS = frozenset(
    {
        "GetApp",
        "GetOrCreateChannel",
        "QueryChannels",
        "QueryMembers",
        "UpdateChannel",
        "UpdateChannelPartial",
        "SendMessage",
        "GetManyMessages",
        "GetMessage",
        "UpdateMessage",
        "UpdateMessagePartial",
        "DeleteMessage",
        "MarkRead",
        "SendEvent",
        "StopWatchingChannel",
        "GetReplies",
    }
)

# ``own_capabilities`` of a channel member (Stream's names; stream-chat-react shows the
# message input only with ``send-message``, typing with ``send-typing-events``...): the
# grants above, without the features the emulator has not (reactions, uploads, search).
MEMBER_CAPABILITIES = (
    "connect-events",
    "delete-own-message",
    "read-events",
    "send-custom-events",
    "send-links",
    "send-message",
    "send-reply",
    "send-typing-events",
    "typing-events",
    "update-own-message",
)
OWNER_CAPABILITIES = ("update-channel", "update-channel-members")


def not_allowed(user_id: str, action: str, scope: str) -> StreamError:
    """403 / code 17 in Stream's words."""
    return StreamError(
        403,
        NOT_ALLOWED,
        f"User '{user_id}' with role 'user' is not allowed to perform action {action} "
        f"in scope '{scope}'",
    )


def check_endpoint(user_id: str, endpoint: str) -> None:
    """A user token on a server-side-only endpoint is refused."""
    if endpoint not in CLIENT_ENDPOINTS:
        raise not_allowed(user_id, endpoint, ".app")


def can_read(channel: ChannelRecord, user_id: str | None) -> bool:
    """Server-side, or a member or the owner of the channel."""
    return user_id is None or user_id in channel.members or user_id == channel.created_by


def require(channel: ChannelRecord, user_id: str | None, action: str) -> None:
    """Read-channel / create-message: a member or the owner (server-side: anyone)."""
    if not can_read(channel, user_id):
        raise not_allowed(str(user_id), action, channel.type)


def require_owner(channel: ChannelRecord, user_id: str | None, action: str) -> None:
    """Changing a channel's data or members: its creator (server-side: anyone)."""
    if user_id is not None and user_id != channel.created_by:
        raise not_allowed(user_id, action, channel.type)


def require_own_message(
    channel: ChannelRecord, message: dict[str, Any], user_id: str | None, action: str
) -> None:
    """Updating or deleting a message: its author, still able to read the channel."""
    require(channel, user_id, action)
    if user_id is not None and message.get("user_id") != user_id:
        raise not_allowed(user_id, action, channel.type)


def capabilities(channel: ChannelRecord, user_id: str) -> list[str]:
    """What the user may do in the channel, as ``channel.own_capabilities`` lists it."""
    if not can_read(channel, user_id):
        return []
    owned = OWNER_CAPABILITIES if user_id == channel.created_by else ()
    return sorted((*MEMBER_CAPABILITIES, *owned))
