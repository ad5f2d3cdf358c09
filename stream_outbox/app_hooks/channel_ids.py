"""Stream channel ids for conversations: the naming rules and their validation.

Pure functions, no I/O. A conversation's channel id is chosen once, when it is
first synced, and stored in the channel map; these rules say which id to choose.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CHANNEL_ID_MAX_LENGTH",
    "CHANNEL_TYPE",
    "USER_ID_MAX_LENGTH",
    "ChannelFacts",
    "InvalidStreamId",
    "choose_channel_id",
    "direct_message_id",
    "fallback_channel_id",
    "validate_channel_id",
    "validate_message_id",
    "validate_user_id",
]

CHANNEL_TYPE = "messaging"
CHANNEL_ID_MAX_LENGTH = 64
USER_ID_MAX_LENGTH = 255
MESSAGE_ID_MAX_LENGTH = 255
_CHANNEL_ID = re.compile(r"[a-zA-Z0-9_-]+")  # '!' is reserved by Stream
_USER_ID = re.compile(r"[a-zA-Z0-9@_-]+")


class InvalidStreamId(ValueError):
    """An id breaks Stream's rules (alphabet or length)."""


@dataclass(frozen=True)
class ChannelFacts:
    """What the channel-id rules need to know about a conversation."""

    conversation_id: str
    invitation_id: str | None = None
    proposal_id: str | None = None
    member_ids: tuple[str, ...] = ()
    legacy: bool = False


def direct_message_id(member_ids: Iterable[str]) -> str:
    """A short, stable channel id for a two-person conversation.

    ``dm_{uuid}_{uuid}`` would be 76 characters, over Stream's limit of 64, so
    the id is a hash of the sorted member ids: the same pair always gets the
    same id, whatever order they joined in.
    """
    joined = "|".join(sorted(set(member_ids)))
    return "dm_" + hashlib.sha256(joined.encode()).hexdigest()[:40]


def choose_channel_id(facts: ChannelFacts) -> str:
    """The channel id a conversation gets when it is first synced.

    In order: ``invitation_{participant_id}`` for an event invitation,
    ``proposal_{proposal_id}`` for a proposal, ``legacy_{conversation_id}`` for a
    conversation that existed before go-live, a hashed direct-message id for two
    people, and ``conversation_{conversation_id}`` for anything else.
    """
    if facts.invitation_id is not None:
        channel_id = f"invitation_{facts.invitation_id}"
    elif facts.proposal_id is not None:
        channel_id = f"proposal_{facts.proposal_id}"
    elif facts.legacy:
        channel_id = f"legacy_{facts.conversation_id}"
    elif len(set(facts.member_ids)) == 2:
        channel_id = direct_message_id(facts.member_ids)
    else:
        channel_id = f"conversation_{facts.conversation_id}"
    return validate_channel_id(channel_id)


def fallback_channel_id(conversation_id: str) -> str:
    """The id used when the preferred one already belongs to another conversation."""
    return validate_channel_id(f"conversation_{conversation_id}")


def validate_channel_id(channel_id: str) -> str:
    """Return ``channel_id`` if Stream accepts it, else raise :class:`InvalidStreamId`."""
    if not channel_id or len(channel_id) > CHANNEL_ID_MAX_LENGTH:
        raise InvalidStreamId(
            f"channel id {channel_id[:80]!r} must be 1 to {CHANNEL_ID_MAX_LENGTH} characters"
        )
    if not _CHANNEL_ID.fullmatch(channel_id):
        raise InvalidStreamId(
            f"channel id {channel_id[:80]!r} may only contain letters, digits, '_' and '-'"
        )
    return channel_id


def validate_message_id(message_id: str) -> str:
    """Return ``message_id`` if Stream accepts it (at most 255 characters, no ``,`` or
    ``%``), else raise :class:`InvalidStreamId`."""
    if not message_id or len(message_id) > MESSAGE_ID_MAX_LENGTH:
        raise InvalidStreamId(
            f"message id {message_id[:80]!r} must be 1 to {MESSAGE_ID_MAX_LENGTH} characters"
        )
    if "," in message_id or "%" in message_id:
        raise InvalidStreamId(f"message id {message_id[:80]!r} may not contain ',' or '%'")
    return message_id


def validate_user_id(user_id: str) -> str:
    """Return ``user_id`` if Stream accepts it, else raise :class:`InvalidStreamId`."""
    if not user_id or len(user_id) > USER_ID_MAX_LENGTH:
        raise InvalidStreamId(
            f"user id {user_id[:80]!r} must be 1 to {USER_ID_MAX_LENGTH} characters"
        )
    if not _USER_ID.fullmatch(user_id):
        raise InvalidStreamId(
            f"user id {user_id[:80]!r} may only contain letters, digits, '@', '_' and '-'"
        )
    return user_id
