"""Input rules the emulator enforces, with the limits Stream documents.

See stream_outbox/emulator/README.md for the source of each rule.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from stream_outbox.emulator.rules.errors import input_error

MAX_USERS_PER_UPSERT = 100
MAX_MEMBERS_PER_CALL = 100
MAX_USERS_PER_DELETE = 100
MAX_USERS_PER_DEACTIVATE = 100
MAX_USERS_PER_RESTORE = 100
MAX_MEMBERS_ON_CREATE = 100
MAX_CUSTOM_DATA_BYTES = 5 * 1024
MAX_CHANNELS_PER_DELETE = 100
MAX_MESSAGE_LENGTH = 5000
MAX_USER_ID_LENGTH = 255
MAX_CHANNEL_ID_LENGTH = 64
MAX_MESSAGE_ID_LENGTH = 255
QUERY_CHANNELS_DEFAULT_LIMIT = 10
QUERY_CHANNELS_MAX_LIMIT = 30
QUERY_USERS_DEFAULT_LIMIT = 30
QUERY_USERS_MAX_LIMIT = 100
QUERY_MEMBERS_DEFAULT_LIMIT = 100
QUERY_MEMBERS_MAX_LIMIT = 300

DEFAULT_CHANNEL_TYPES = ("messaging", "livestream", "team", "gaming", "commerce")

_USER_ID_RE = re.compile(r"[A-Za-z0-9@_\-]+")
_CHANNEL_ID_RE = re.compile(r"[A-Za-z0-9_\-]+")
_MESSAGE_ID_FORBIDDEN = (",", "%")


def check_user_id(user_id: Any, where: str = "user.id") -> str:
    """Validate a user id: letters, digits, ``@``, ``_``, ``-``; at most 255 characters."""
    if not isinstance(user_id, str) or not user_id:
        raise input_error(f"{where} is a required field")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise input_error(
            f"{where} {user_id[:32]}... is too long, maximum length is {MAX_USER_ID_LENGTH}"
        )
    if _USER_ID_RE.fullmatch(user_id) is None:
        raise input_error(
            f"{where} {user_id!r} is not a valid user id. a-z, 0-9, @, _ and - are allowed."
        )
    return user_id


def check_channel_id(channel_id: str) -> str:
    """Validate a client-chosen channel id: letters, digits, ``_``, ``-``; at most 64."""
    if not channel_id:
        raise input_error("channel id is a required field")
    if "!" in channel_id:
        raise input_error(
            "Cannot create a channel with a '!' in the ID, this is a reserved character."
        )
    if len(channel_id) > MAX_CHANNEL_ID_LENGTH:
        raise input_error(
            f"channel id {channel_id[:16]}... is too long, "
            f"maximum length is {MAX_CHANNEL_ID_LENGTH}"
        )
    if _CHANNEL_ID_RE.fullmatch(channel_id) is None:
        raise input_error(
            f"channel id {channel_id!r} is not valid, a-z, A-Z, 0-9, _ and - are allowed"
        )
    return channel_id


def check_message_id(message_id: Any) -> str:
    """A client-chosen message id: a string of at most 255 characters, without ``,`` or ``%``."""
    if not isinstance(message_id, str) or not message_id:
        raise input_error("message.id must be a non-empty string")
    if len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise input_error(
            f"message.id {message_id[:32]}... is too long, "
            f"maximum length is {MAX_MESSAGE_ID_LENGTH}"
        )
    if any(char in message_id for char in _MESSAGE_ID_FORBIDDEN):
        raise input_error(f"message.id {message_id!r} cannot contain ',' or '%'")
    return message_id


def distinct_channel_id(member_ids: Iterable[str]) -> str:
    """The id of a distinct (member-based) channel: ``!members-`` and a hash of the
    sorted member ids."""
    ids = sorted(set(member_ids))
    return "!members-" + hashlib.sha1(",".join(ids).encode()).hexdigest()


def check_custom_size(what: str, data: dict[str, Any], reserved: Iterable[str] = ()) -> None:
    """Refuse custom data (fields other than ``reserved``) over 5 KB, as JSON."""
    skip = frozenset(reserved)
    custom = {k: v for k, v in data.items() if k not in skip}
    size = len(json.dumps(custom, separators=(",", ":"), ensure_ascii=False, default=str).encode())
    if size > MAX_CUSTOM_DATA_BYTES:
        raise input_error(
            f"{what} custom data is too large: {size} bytes, "
            f"the maximum is {MAX_CUSTOM_DATA_BYTES} (5KB)"
        )


def check_batch(items: Any, field: str, maximum: int) -> list[Any]:
    """Require a list of at most ``maximum`` items."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise input_error(f"{field} must be a list")
    if len(items) > maximum:
        raise input_error(f"{field} can contain at most {maximum} items, got {len(items)}")
    return items


def as_bool(value: Any) -> bool:
    """Interpret a JSON or query-string value as a boolean."""
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    return bool(value)


def clamp_limit(value: Any, default: int, maximum: int) -> int:
    """Read a ``limit`` option, falling back to ``default`` and capping at ``maximum``."""
    if value is None:
        return default
    try:
        limit = int(value)
    except (TypeError, ValueError) as exc:
        raise input_error("limit must be an integer") from exc
    if limit < 0:
        raise input_error("limit must be a positive integer")
    return min(limit, maximum)


def read_offset(value: Any) -> int:
    """Read an ``offset`` option."""
    if value is None:
        return 0
    try:
        offset = int(value)
    except (TypeError, ValueError) as exc:
        raise input_error("offset must be an integer") from exc
    return max(offset, 0)
