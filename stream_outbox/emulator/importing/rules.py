"""Stream's per-item rules for an import file, one check per item type.

Sources: ``docs/migrating/import.md`` in GetStream/stream-chat-python ("File Format",
the field tables with their "required" and "upserted" columns, "Error Messages"), and
the JSON schemas that page names as the definition of its validation
(GetStream/protocol, ``jsonschemas/chat/*.schema.json``). Wording the page does not
give is marked inferred here and in the README.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from stream_outbox.emulator.rules.validation import (
    MAX_CHANNEL_ID_LENGTH,
    MAX_CUSTOM_DATA_BYTES,
    MAX_MESSAGE_ID_LENGTH,
    MAX_USER_ID_LENGTH,
    distinct_channel_id,
)
from stream_outbox.emulator.state.store import Store

MESSAGE_TYPES = frozenset({"regular", "reply", "deleted", "system"})
PUSH_PROVIDERS = frozenset({"firebase", "apn", "huawei", "xiaomi"})
MAX_ATTACHMENTS = 30  # message.schema.json: "attachments" maxItems
MAX_DEVICE_ID_LENGTH = 255  # device.schema.json
_USER_ID_RE = re.compile(r"[A-Za-z0-9@_\-]+")
_CHANNEL_ID_RE = re.compile(r"[A-Za-z0-9_\-]+")
# RFC 3339 section 5.6 date-time: a time zone is required ("Z" or an offset).
_RFC3339_RE = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")
TIME_FIELDS = (
    "created_at", "deleted_at", "deactivated_at", "last_read", "truncated_at", "pinned_at",
    "pin_expires", "hide_messages_before", "archived_at", "invite_accepted_at",
    "invite_rejected_at", "invited_accepted_at", "invited_rejected_at",
)  # fmt: skip

# The documented fields of each type (the field tables, and the schemas); the others
# are custom data, 5 KB at most per object ("The limit is 5KB of custom field data").
OWN_FIELDS = {
    "user": frozenset({
        "id", "blocked_user_ids", "channel_mutes", "created_at", "deactivated_at",
        "deleted_at", "invisible", "language", "privacy_settings", "push_preferences",
        "role", "teams", "teams_role", "user_mutes",
    }),
    "channel": frozenset({
        "id", "type", "member_ids", "banned_users", "created_at", "created_by", "disabled",
        "frozen", "team", "truncated_at",
    }),
    "member": frozenset({
        "channel_type", "channel_id", "channel_member_ids", "user_id", "archived_at",
        "channel_role", "created_at", "hide_channel", "hide_messages_before", "invited",
        "invite_accepted_at", "invite_rejected_at", "invited_accepted_at",
        "invited_rejected_at", "last_read", "is_moderator",
    }),
    "message": frozenset({
        "id", "channel_type", "channel_id", "channel_member_ids", "user", "attachments",
        "created_at", "deleted_at", "html", "mentioned_users_ids", "mentioned_roles",
        "mentioned_channel", "mentioned_here", "parent_id", "pin_expires", "pinned_at",
        "pinned_by_id", "quoted_message_id", "restricted_visibility", "show_in_channel",
        "text", "type",
    }),
    "reaction": frozenset({"message_id", "type", "user_id", "created_at"}),
}  # fmt: skip
# Fields without a tick in the "upserted" column (besides the item's key): an upsert
# keeps what the app already has.
NOT_UPSERTED = {
    "user": frozenset({"channel_mutes", "user_mutes"}),
    "channel": frozenset({"banned_users", "member_ids"}),
    "member": frozenset({"hide_channel", "last_read"}),
}


class Invalid(Exception):
    """One item's validation error (its text follows Stream's ``Validation error: ``)."""


class Seen:
    """Keys of the items read so far, per type, for duplicates and references."""

    def __init__(self) -> None:
        self.keys: dict[str, set[str]] = {t: set() for t in CHECKS}


def distinct_cid(channel_type: str, member_ids: Iterable[str]) -> str:
    """The cid Stream derives from a distinct channel's members (the id the emulator's
    member-based ``GetOrCreateChannel`` gives the same members)."""
    return f"{channel_type}:{distinct_channel_id(member_ids)}"


def item_cid(data: dict[str, Any]) -> str:
    """The cid a member or message item points at (by id or by member ids)."""
    if data.get("channel_member_ids") is not None:
        return distinct_cid(data["channel_type"], data["channel_member_ids"])
    return f"{data['channel_type']}:{data['channel_id']}"


def check_times(data: dict[str, Any]) -> None:
    """Every time field in RFC 3339 ("All time fields should be in RFC 3339 format")."""
    for name in TIME_FIELDS:
        value = data.get(name)
        if value is None:
            continue
        try:
            if not isinstance(value, str) or _RFC3339_RE.fullmatch(value) is None:
                raise ValueError(value)
            datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise Invalid(f"'{value}' is not a valid {name}") from None


def check_custom_size(item_type: str, data: dict[str, Any], line_bytes: int) -> None:
    """Custom fields of one object: at most 5 KB, as compact JSON (wording inferred,
    after the live API's)."""
    if line_bytes <= MAX_CUSTOM_DATA_BYTES:  # the whole line fits: its custom part does
        return
    own = OWN_FIELDS[item_type]
    custom = {k: v for k, v in data.items() if k not in own}
    size = len(json.dumps(custom, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_CUSTOM_DATA_BYTES:
        raise Invalid(
            f"{item_type} custom data is too large: {size} bytes, "
            f"the maximum is {MAX_CUSTOM_DATA_BYTES} (5KB)"
        )


def _required(data: dict[str, Any], *names: str) -> None:
    for name in names:
        if data.get(name) in (None, ""):
            raise Invalid(f'"{name}" required')


def _string(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if value in (None, ""):
        raise Invalid(f'"{name}" required')
    if not isinstance(value, str):
        raise Invalid(f"'{value}' is not a valid {name}")
    return value


def _user_id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(f'"{name}" required')
    if len(value) > MAX_USER_ID_LENGTH:
        raise Invalid(f'max "{name}" length exceeded ({MAX_USER_ID_LENGTH})')
    if _USER_ID_RE.fullmatch(value) is None:
        raise Invalid(f"'{value}' is not a valid {name}")
    return value


def _user_exists(user_id: str, store: Store, seen: Seen, role: str, where: str) -> None:
    """Stream's ``created_by user X doesn't exist (channel "t:id"). please include ...``."""
    if user_id in seen.keys["user"]:
        return
    if user_id in store.users and not store.was_deleted(user_id):
        return
    raise Invalid(
        f"{role} {user_id} doesn't exist ({where}). please include all users as separate "
        "user entries"
    )


def _channel_exists(cid: str, store: Store, seen: Seen, what: str) -> None:
    if cid in seen.keys["channel"]:
        return
    channel = store.channels.get(cid)
    if channel is not None and channel.deleted_at is None:
        return
    # inferred wording, after the documented one for users
    raise Invalid(
        f'channel "{cid}" doesn\'t exist ({what}). please include all channels as separate '
        "channel entries"
    )


def _message_exists(message_id: str, store: Store, seen: Seen, what: str) -> None:
    if message_id not in seen.keys["message"] and message_id not in store.message_cids:
        raise Invalid(f'message "{message_id}" doesn\'t exist ({what})')  # inferred wording


def _member_ids(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not value:  # schema: an array, minItems 1
        raise Invalid(f"'{value}' is not a valid {name}")
    return [_user_id(user_id, name) for user_id in value]


def _channel_of(data: dict[str, Any], store: Store, seen: Seen, what: str) -> str:
    """The cid of a member or message: ``channel_id`` or ``channel_member_ids``, one."""
    _required(data, "channel_type")
    by_id, by_members = data.get("channel_id"), data.get("channel_member_ids")
    if by_id is not None and by_members is not None:  # wording after the channel's
        raise Invalid("either channel_id or channel_member_ids should be provided, but not both")
    if by_id in (None, "") and by_members is None:
        raise Invalid("channel_id or channel_member_ids required, but not both")
    if by_members is not None:
        _member_ids(by_members, "channel_member_ids")
    cid = item_cid(data)
    _channel_exists(cid, store, seen, what)
    return cid


def check_user(data: dict[str, Any], store: Store, seen: Seen) -> str:
    """A user: ``id`` (at most 255 of ``a-z A-Z 0-9 @ _ -``)."""
    return _user_id(data.get("id"), "id")


def check_device(data: dict[str, Any], store: Store, seen: Seen) -> str:
    """A device: ``id``, ``user_id``, ``push_provider_type`` and ``push_provider_name``."""
    device_id = _string(data, "id")
    if len(device_id) > MAX_DEVICE_ID_LENGTH:
        raise Invalid(f'max "id" length exceeded ({MAX_DEVICE_ID_LENGTH})')
    user_id = _user_id(data.get("user_id"), "user_id")
    provider = _string(data, "push_provider_type")
    if provider not in PUSH_PROVIDERS:
        raise Invalid(f"'{provider}' is not a valid push_provider_type")
    _string(data, "push_provider_name")
    _user_exists(user_id, store, seen, "device user", f'device "{device_id}"')
    return device_id


def check_future_channel_ban(data: dict[str, Any], store: Store, seen: Seen) -> str:
    """A future channel ban: ``created_by`` and ``target_id``, both users."""
    creator = _user_id(data.get("created_by"), "created_by")
    target = _user_id(data.get("target_id"), "target_id")
    _user_exists(creator, store, seen, "created_by user", f'future channel ban of "{target}"')
    _user_exists(target, store, seen, "target user", f'future channel ban of "{target}"')
    return target


def check_channel(data: dict[str, Any], store: Store, seen: Seen) -> str:
    """A channel: ``type``, ``created_by``, and ``id`` or (distinct) ``member_ids``."""
    has_id, has_members = data.get("id") is not None, data.get("member_ids") is not None
    if has_id and has_members:
        raise Invalid("either channel.id or channel.member_ids should be provided, but not both")
    if not has_members and data.get("id") in (None, ""):
        raise Invalid("channel.id or channel.member_ids required, but not both")
    channel_type = _string(data, "type")
    if len(channel_type) > MAX_CHANNEL_ID_LENGTH or not _CHANNEL_ID_RE.fullmatch(channel_type):
        raise Invalid(f"'{channel_type}' is not a valid channel.type")
    creator = _user_id(data.get("created_by"), "created_by")
    if has_members:
        members = _member_ids(data["member_ids"], "member_ids")
        cid = distinct_cid(channel_type, members)
        for member in members:
            _user_exists(member, store, seen, "member user", f'channel "{cid}"')
    else:
        channel_id = data["id"]
        if not isinstance(channel_id, str):
            raise Invalid(f"'{channel_id}' is not a valid channel.id")
        if len(channel_id) > MAX_CHANNEL_ID_LENGTH:
            raise Invalid(f"max channelID length exceeded ({MAX_CHANNEL_ID_LENGTH})")
        if _CHANNEL_ID_RE.fullmatch(channel_id) is None:
            raise Invalid(f"'{channel_id}' is not a valid channel.id")
        cid = f"{channel_type}:{channel_id}"
    _user_exists(creator, store, seen, "created_by user", f'channel "{cid}"')
    return cid


def check_member(data: dict[str, Any], store: Store, seen: Seen) -> str:
    """A member: ``user_id`` and its channel, both in the file or the app."""
    user_id = _user_id(data.get("user_id"), "user_id")
    cid = _channel_of(data, store, seen, f"member {user_id}")
    _user_exists(user_id, store, seen, "member user", f'channel "{cid}"')
    if data.get("invited") is not True:  # channel_member.schema.json: else these are null
        for name in ("invite_accepted_at", "invite_rejected_at"):
            if data.get(name) is not None:
                raise Invalid(f"'{data[name]}' is not a valid {name}")
    return f"{cid}/{user_id}"


def check_message(data: dict[str, Any], store: Store, seen: Seen) -> str:
    """A message: ``id``, ``type``, ``user``, its channel, and the schema's pairings."""
    message_id = _string(data, "id")
    if len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise Invalid(f'max "id" length exceeded ({MAX_MESSAGE_ID_LENGTH})')
    if "," in message_id or "%" in message_id:
        raise Invalid(f"'{message_id}' is not a valid id")
    message_type = _string(data, "type")
    if message_type not in MESSAGE_TYPES:
        raise Invalid(f"'{message_type}' is not a valid type")
    user_id = _user_id(data.get("user"), "user")
    where = f'message "{message_id}"'
    cid = _channel_of(data, store, seen, where)
    _user_exists(user_id, store, seen, "message user", where)
    _pairings(data, message_type)
    for name in ("parent_id", "quoted_message_id"):
        if data.get(name) is not None:
            _message_exists(str(data[name]), store, seen, f"{name} of {where}")
    if data.get("pinned_by_id") is not None:
        pinner = _user_id(data["pinned_by_id"], "pinned_by_id")
        _user_exists(pinner, store, seen, "pinned_by user", where)
    attachments = data.get("attachments")
    if attachments is not None and (
        not isinstance(attachments, list) or len(attachments) > MAX_ATTACHMENTS
    ):
        raise Invalid(f'max "attachments" length exceeded ({MAX_ATTACHMENTS})')
    other = store.message_cids.get(message_id)
    if other is not None and other != cid:  # ids are unique across the app (inferred)
        raise Invalid(f'message "{message_id}" already exists in channel "{other}"')
    return message_id


def _pairings(data: dict[str, Any], message_type: str) -> None:
    """message.schema.json: a reply has a ``parent_id`` (and a ``parent_id`` makes a
    reply, as the field table says), ``deleted`` goes with ``deleted_at``,
    ``pinned_at`` with ``pinned_by_id``, ``pin_expires`` needs both, ``show_in_channel``
    needs a ``parent_id``."""
    if message_type == "reply" or data.get("show_in_channel") is not None:
        _required(data, "parent_id")
    if data.get("parent_id") is not None and message_type not in ("reply", "deleted"):
        raise Invalid(f"'{message_type}' is not a valid type")
    if message_type == "deleted":
        _required(data, "deleted_at")
    if data.get("deleted_at") is not None and message_type != "deleted":
        raise Invalid(f"'{message_type}' is not a valid type")
    if data.get("pinned_at") is not None or data.get("pin_expires") is not None:
        _required(data, "pinned_by_id")
    if data.get("pinned_by_id") is not None or data.get("pin_expires") is not None:
        _required(data, "pinned_at")


def check_reaction(data: dict[str, Any], store: Store, seen: Seen) -> str:
    """A reaction: ``message_id``, ``type``, ``user_id`` and ``created_at``."""
    _required(data, "message_id", "type", "user_id", "created_at")
    user_id = _user_id(data["user_id"], "user_id")
    message_id = str(data["message_id"])
    _user_exists(user_id, store, seen, "reaction user", f'message "{message_id}"')
    _message_exists(message_id, store, seen, f"reaction of {user_id}")
    return f"{message_id}/{user_id}/{data['type']}"


Check = Callable[[dict[str, Any], Store, Seen], str]
CHECKS: dict[str, Check] = {
    "user": check_user,
    "device": check_device,
    "future_channel_ban": check_future_channel_ban,
    "channel": check_channel,
    "member": check_member,
    "message": check_message,
    "reaction": check_reaction,
}
