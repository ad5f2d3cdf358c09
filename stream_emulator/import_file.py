"""Reading and validating a Stream import file (JSON Lines), without changing the store.

The format and the wording of errors come from Stream's import page,
``docs/migrating/import.md`` in GetStream/stream-chat-python ("File Format", "Data
format", "Error Messages"); rules and wording it does not give are marked inferred
here and in the README.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stream_emulator.store import Store
from stream_emulator.validation import (
    MAX_CHANNEL_ID_LENGTH,
    MAX_MESSAGE_ID_LENGTH,
    MAX_USER_ID_LENGTH,
)

# The documented order: users, devices, future_channel_ban, channels, members, messages,
# reactions. Each type's rank; an item may not follow an item of a higher rank.
ORDER = ("user", "device", "future_channel_ban", "channel", "member", "message", "reaction")
RANK = {item_type: rank for rank, item_type in enumerate(ORDER)}
MESSAGE_TYPES = frozenset({"regular", "reply", "deleted", "system"})
MAX_FILE_BYTES = 300 * 1000 * 1000  # "The maximum file size supported for upload is 300 MB."
_USER_ID_RE = re.compile(r"[A-Za-z0-9@_\-]+")
_CHANNEL_ID_RE = re.compile(r"[A-Za-z0-9_\-]+")
_TIME_FIELDS = ("created_at", "deleted_at", "deactivated_at", "last_read", "truncated_at")
STAT_KEYS = ("users", "channels", "members", "messages", "reactions")


@dataclass(frozen=True)
class Item:
    """One valid line of the file."""

    line: int
    type: str
    data: dict[str, Any]


@dataclass
class Analysis:
    """The items of a file, or the errors that refuse it, and the per-type counts."""

    items: list[Item] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAT_KEYS, 0))

    def report(self) -> dict[str, Any]:
        """``{"errors": [...], "stats": {"total": {...}}}``, the shape Stream shows."""
        return {"errors": list(self.errors), "stats": {"total": dict(self.stats)}}


class _Invalid(Exception):
    """One item's validation error (its text is Stream's ``Validation error: ...``)."""


def analyze(content: bytes, store: Store, max_bytes: int = MAX_FILE_BYTES) -> Analysis:
    """Parse and validate every line; references may point at the file or the store."""
    result = Analysis()
    if len(content) > max_bytes:
        result.errors.append(
            {"line": 0, "error": f"Validation error: max file size exceeded ({max_bytes} bytes)"}
        )
        return result
    seen: dict[str, set[str]] = {t: set() for t in ORDER}
    highest = 0
    for number, raw in enumerate(content.decode("utf-8", errors="replace").splitlines(), 1):
        if not raw.strip():
            continue
        item, error = _parse_line(number, raw)
        if item is None:
            result.errors.append(error)
            continue
        try:
            highest = _check_order(item, highest)
            key = _validate(item, store, seen)
        except _Invalid as exc:
            result.errors.append(_error(item, str(exc)))
            continue
        if key is not None:
            seen[item.type].add(key)
        result.items.append(item)
        stat = f"{item.type}s"
        if stat in result.stats:
            result.stats[stat] += 1
    return result


def _error(item: Item, text: str) -> dict[str, Any]:
    return {
        "line": item.line,
        "error": f"Validation error: {text}",
        "item_type": item.type,
        "item": item.data,
    }


def _parse_line(number: int, raw: str) -> tuple[Item | None, dict[str, Any]]:
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        # Stream quotes Go's decoder ("invalid character ',' looking for beginning of
        # value"); the detail here is Python's (inferred wording after "Parse error: ").
        return None, {"line": number, "error": f"Parse error: {getattr(exc, 'msg', exc)}"}
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), dict):
        return None, {
            "line": number,
            "error": 'Parse error: an item must be an object with "type" and an object "data"',
        }
    item_type = obj.get("type")
    if item_type not in RANK:
        return None, {"line": number, "error": f'Parse error: invalid item type "{item_type}"'}
    return Item(number, str(item_type), obj["data"]), {}


def _check_order(item: Item, highest: int) -> int:
    rank = RANK[item.type]
    if rank < highest:
        raise _Invalid(
            f'item of type "{item.type}" after an item of type "{ORDER[highest]}": items must '
            "come in the order " + ", ".join(ORDER)
        )
    return rank


def _required(data: dict[str, Any], *names: str) -> None:
    for name in names:
        if data.get(name) in (None, ""):
            raise _Invalid(f'"{name}" required')


def _times(data: dict[str, Any]) -> None:
    for name in _TIME_FIELDS:
        value = data.get(name)
        if value is None:
            continue
        try:
            if not isinstance(value, str) or "T" not in value:
                raise ValueError(value)
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _Invalid(f"'{value}' is not a valid {name}") from None


def _user_id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise _Invalid(f'"{name}" required')
    if len(value) > MAX_USER_ID_LENGTH:
        raise _Invalid(f'max "{name}" length exceeded ({MAX_USER_ID_LENGTH})')
    if _USER_ID_RE.fullmatch(value) is None:
        raise _Invalid(f"'{value}' is not a valid {name}")
    return value


def _user_exists(
    user_id: str, store: Store, seen: dict[str, set[str]], role: str, where: str
) -> None:
    """Stream's ``created_by user X doesn't exist (channel "t:id"). please include ...``."""
    if user_id in seen["user"]:
        return
    if user_id in store.users and not store.was_deleted(user_id):
        return
    raise _Invalid(
        f"{role} {user_id} doesn't exist ({where}). please include all users as separate "
        "user entries"
    )


def _channel_exists(cid: str, store: Store, seen: dict[str, set[str]], what: str) -> None:
    if cid in seen["channel"]:
        return
    channel = store.channels.get(cid)
    if channel is not None and channel.deleted_at is None:
        return
    # inferred wording, after the documented one for users
    raise _Invalid(
        f'channel "{cid}" doesn\'t exist ({what}). please include all channels as separate '
        "channel entries"
    )


def _cid(data: dict[str, Any]) -> str:
    if data.get("channel_member_ids") is not None:
        raise _Invalid("distinct channels (channel_member_ids) are not emulated")
    _required(data, "channel_type", "channel_id")
    return f"{data['channel_type']}:{data['channel_id']}"


def _validate(item: Item, store: Store, seen: dict[str, set[str]]) -> str | None:
    """Check one item; return its key (for duplicates and references) or None."""
    data = item.data
    _times(data)
    check = _CHECKS.get(item.type)
    if check is None:  # device, future_channel_ban: read, not applied
        return None
    key = check(data, store, seen)
    if key in seen[item.type]:
        raise _Invalid(f'duplicated {item.type} "{key}"')
    return key


def _check_user(data: dict[str, Any], store: Store, seen: dict[str, set[str]]) -> str:
    return _user_id(data.get("id"), "id")


def _check_channel(data: dict[str, Any], store: Store, seen: dict[str, set[str]]) -> str:
    if data.get("member_ids") is not None:
        if data.get("id") is not None:
            raise _Invalid(
                "either channel.id or channel.member_ids should be provided, but not both"
            )
        raise _Invalid("distinct channels (member_ids) are not emulated")
    if data.get("id") in (None, ""):
        raise _Invalid("channel.id or channel.member_ids required, but not both")
    _required(data, "type", "created_by")
    channel_id = str(data["id"])
    if len(channel_id) > MAX_CHANNEL_ID_LENGTH:
        raise _Invalid(f"max channelID length exceeded ({MAX_CHANNEL_ID_LENGTH})")
    if _CHANNEL_ID_RE.fullmatch(channel_id) is None:
        raise _Invalid(f"'{channel_id}' is not a valid channel.id")
    cid = f"{data['type']}:{channel_id}"
    creator = _user_id(data["created_by"], "created_by")
    _user_exists(creator, store, seen, "created_by user", f'channel "{cid}"')
    return cid


def _check_member(data: dict[str, Any], store: Store, seen: dict[str, set[str]]) -> str:
    cid = _cid(data)
    user_id = _user_id(data.get("user_id"), "user_id")
    _user_exists(user_id, store, seen, "member user", f'channel "{cid}"')
    _channel_exists(cid, store, seen, f"member {user_id}")
    return f"{cid}/{user_id}"


def _check_message(data: dict[str, Any], store: Store, seen: dict[str, set[str]]) -> str:
    _required(data, "id", "type", "user")
    message_id = data["id"]
    if not isinstance(message_id, str):
        raise _Invalid(f"'{message_id}' is not a valid id")
    if len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise _Invalid(f'max "id" length exceeded ({MAX_MESSAGE_ID_LENGTH})')
    if "," in message_id or "%" in message_id:
        raise _Invalid(f"'{message_id}' is not a valid id")
    if data["type"] not in MESSAGE_TYPES:
        raise _Invalid(f"'{data['type']}' is not a valid type")
    cid = _cid(data)
    user_id = _user_id(data["user"], "user")
    _user_exists(user_id, store, seen, "message user", f'message "{message_id}"')
    _channel_exists(cid, store, seen, f'message "{message_id}"')
    other = store.message_cids.get(message_id)
    if other is not None and other != cid:  # ids are unique across the app (inferred)
        raise _Invalid(f'message "{message_id}" already exists in channel "{other}"')
    return message_id


def _check_reaction(data: dict[str, Any], store: Store, seen: dict[str, set[str]]) -> str:
    _required(data, "message_id", "type", "user_id", "created_at")
    user_id = _user_id(data["user_id"], "user_id")
    message_id = str(data["message_id"])
    _user_exists(user_id, store, seen, "reaction user", f'message "{message_id}"')
    if message_id not in seen["message"] and message_id not in store.message_cids:
        raise _Invalid(f'message "{message_id}" doesn\'t exist (reaction of {user_id})')
    return f"{message_id}/{user_id}/{data['type']}"


_CHECKS = {
    "user": _check_user,
    "channel": _check_channel,
    "member": _check_member,
    "message": _check_message,
    "reaction": _check_reaction,
}
