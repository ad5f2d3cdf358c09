"""Channel endpoints: get-or-create, update, partial update, delete, truncate, queries.

A user-token call sees and changes only what Stream's default permissions let it
(``rules/permissions.py``); each change is an event for the webhooks.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

from stream_outbox.emulator.endpoints.call import Call
from stream_outbox.emulator.endpoints.events import emit_channel, emit_member, emit_message
from stream_outbox.emulator.endpoints.messages import as_caller, create_message
from stream_outbox.emulator.endpoints.watching import for_caller, watch
from stream_outbox.emulator.rules.errors import input_error, not_found, user_deleted
from stream_outbox.emulator.rules.filters import (
    MISSING,
    matches,
    named_values,
    normalize_sort,
    sort_items,
)
from stream_outbox.emulator.rules.permissions import can_read, require, require_owner
from stream_outbox.emulator.rules.validation import (
    MAX_CHANNELS_PER_DELETE,
    MAX_MEMBERS_ON_CREATE,
    MAX_MEMBERS_PER_CALL,
    QUERY_CHANNELS_DEFAULT_LIMIT,
    QUERY_CHANNELS_MAX_LIMIT,
    QUERY_MEMBERS_DEFAULT_LIMIT,
    QUERY_MEMBERS_MAX_LIMIT,
    as_bool,
    check_batch,
    check_channel_id,
    check_custom_size,
    check_user_id,
    clamp_limit,
    distinct_channel_id,
    read_offset,
)
from stream_outbox.emulator.state.store import (
    CHANNEL_RESERVED_FIELDS,
    ChannelRecord,
    Store,
    new_member,
)

_MEMBER_KEYS = frozenset({"user_id", "user", "created_at", "updated_at"})


def _member_entries(raw: list[Any], field: str) -> list[tuple[str, dict[str, Any]]]:
    """Accept ``["id", ...]`` or ``[{"user_id": "id", ...}, ...]``."""
    entries: list[tuple[str, dict[str, Any]]] = []
    for item in raw:
        if isinstance(item, str):
            entries.append((check_user_id(item, f"{field}[]"), {}))
        elif isinstance(item, dict):
            user = item.get("user")
            user_id = item.get("user_id") or (user.get("id") if isinstance(user, dict) else None)
            extra = {k: v for k, v in item.items() if k not in _MEMBER_KEYS}
            entries.append((check_user_id(user_id, f"{field}[].user_id"), extra))
        else:
            raise input_error(f"{field} entries must be user ids or member objects")
    return entries


def _add_members(
    channel: ChannelRecord, entries: list[tuple[str, dict[str, Any]]], now: str
) -> list[dict[str, Any]]:
    """Add (or update) members; return the records of those who were not members."""
    added = []
    for user_id, extra in entries:
        if user_id in channel.members:
            channel.members[user_id].update(extra)
            continue
        member = {**new_member(user_id, channel.created_by, now), "updated_at": now}
        member.update(extra)
        channel.members[user_id] = member
        added.append(member)
    return added


def _custom(data: dict[str, Any]) -> dict[str, Any]:
    """A channel's custom data (at most 5 KB)."""
    custom = {k: v for k, v in data.items() if k not in CHANNEL_RESERVED_FIELDS}
    check_custom_size("channel", custom)
    return custom


def _refuse_deleted(store: Store, user_ids: list[str]) -> None:
    """A deleted user cannot be a member or creator: 404 code 16, ``the user X was deleted``."""
    for user_id in user_ids:
        if store.was_deleted(user_id):
            raise user_deleted(user_id)


def _create_members(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``data.members`` of a channel being created: at most 100 (one call adds up to 100)."""
    members = check_batch(data.get("members"), "data.members", MAX_MEMBERS_ON_CREATE)
    return _member_entries(members, "members")


def _creator(data: dict[str, Any]) -> str:
    created_by = data.get("created_by")
    user_id = created_by.get("id") if isinstance(created_by, dict) else created_by
    user_id = user_id or data.get("created_by_id")
    if not user_id:
        raise input_error(
            "either data.created_by or data.created_by_id must be provided "
            "when using server side auth."
        )
    return check_user_id(user_id, "data.created_by.id")


def _check_type(call: Call) -> str:
    channel_type = call.params[0]
    if channel_type not in call.channel_types:
        raise not_found(f'channel type "{channel_type}" does not exist')
    return channel_type


def _distinct_id(entries: list[tuple[str, dict[str, Any]]]) -> str:
    ids = sorted({uid for uid, _ in entries})
    if len(ids) < 2:
        raise input_error("When using member based IDs specify at least 2 members")
    return distinct_channel_id(ids)


def _create(call: Call, channel_type: str, channel_id: str, data: dict[str, Any]) -> ChannelRecord:
    store = call.store
    creator = _creator(data)
    entries = _create_members(data)
    missing = [
        uid for uid, _ in entries if uid not in store.users and uid not in store.deleted_user_ids
    ]
    if missing:
        raise input_error(
            f"The following users are specified in channel.members but don't exist: "
            f"[{' '.join(missing)}], please create the user objects before setting up the channel"
        )
    if creator not in store.users and creator not in store.deleted_user_ids:
        raise input_error(
            f"The following users are involved in channel create operation, but don't exist: "
            f"[{creator}]. Please create the user objects before setting up the channel."
        )
    _refuse_deleted(store, [creator, *(uid for uid, _ in entries)])
    custom = _custom(data)
    cid = f"{channel_type}:{channel_id}"
    # A soft-deleted channel is re-created empty; its old messages' ids stay taken.
    store.drop_channel(cid, keep_message_ids=True)
    channel = ChannelRecord(
        type=channel_type,
        id=channel_id,
        created_by=creator,
        created_at=call.now,
        updated_at=call.now,
        seq=store.next_seq(),
        data=custom,
    )
    _add_members(channel, entries, call.now)
    store.channels[cid] = channel
    return channel


def _limit_option(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key)
    if isinstance(value, dict):
        return clamp_limit(value.get("limit"), default, 300)
    return default


def get_or_create_channel(call: Call) -> dict[str, Any]:
    """``POST /channels/{type}/{id}/query`` (GetOrCreateChannel).

    An existing channel is returned unchanged: ``data`` only applies on creation.
    """
    channel_type = _check_type(call)
    data = call.body.get("data") or {}
    if not isinstance(data, dict):
        raise input_error("data must be an object")
    if call.actor is not None:  # a user creates a channel as itself
        data = {k: v for k, v in data.items() if k != "created_by"}
        data["created_by_id"] = call.actor
    if len(call.params) > 1:
        channel_id = check_channel_id(call.params[1])
    else:
        channel_id = _distinct_id(_create_members(data))
    existing = call.store.channels.get(f"{channel_type}:{channel_id}")
    if existing is None or existing.deleted_at is not None:
        existing = _create(call, channel_type, channel_id, data)
        emit_channel(call, "channel.created", existing)
    require(existing, call.actor, "ReadChannel")
    watch(call, existing)
    pages = call.body.get("messages")
    before = pages.get("id_lt") if isinstance(pages, dict) else None
    state = call.store.channel_state(
        existing,
        message_limit=_limit_option(call.body, "messages", 25),
        member_limit=_limit_option(call.body, "members", 100),
        before=str(before) if before else None,
    )
    return for_caller(call, existing, state)


def _member_ops(call: Call, channel: ChannelRecord) -> None:
    store = call.store
    add = _member_entries(
        check_batch(call.body.get("add_members"), "add_members", MAX_MEMBERS_PER_CALL),
        "add_members",
    )
    remove = check_batch(call.body.get("remove_members"), "remove_members", MAX_MEMBERS_PER_CALL)
    moderators = check_batch(
        call.body.get("add_moderators"), "add_moderators", MAX_MEMBERS_PER_CALL
    )
    demote = check_batch(
        call.body.get("demote_moderators"), "demote_moderators", MAX_MEMBERS_PER_CALL
    )
    for user_id, _ in add + [(m, {}) for m in moderators]:
        if user_id not in store.users and user_id not in store.deleted_user_ids:
            raise input_error(f"could not find user {user_id} from add_members")
    _refuse_deleted(store, [uid for uid, _ in add] + [str(m) for m in moderators])
    added = _add_members(channel, add, call.now)
    promoted = [(m, {"channel_role": "channel_moderator"}) for m in moderators]
    added += _add_members(channel, promoted, call.now)
    for member in added:
        emit_member(call, "member.added", channel, member)
    for user_id in demote:
        if user_id in channel.members:
            channel.members[user_id]["channel_role"] = "channel_member"
    for user_id in remove:
        gone = channel.members.pop(check_user_id(user_id, "remove_members[]"), None)
        if gone is not None:
            emit_member(call, "member.removed", channel, gone)


def update_channel(call: Call) -> dict[str, Any]:
    """``POST /channels/{type}/{id}`` (UpdateChannel): data, add/remove members, moderators."""
    _check_type(call)
    channel = call.store.require_channel(*call.params[:2])
    require_owner(channel, call.actor, "UpdateChannel")
    data = call.body.get("data")
    if data is not None and not isinstance(data, dict):
        raise input_error("data must be an object")
    custom = _custom(data) if data is not None else None
    _member_ops(call, channel)
    if custom is not None:
        channel.data = custom
    message = as_caller(call, call.body.get("message"))
    created = create_message(call.store, channel, message, call.now) if message else None
    channel.updated_at = call.now
    if custom is not None:
        emit_channel(call, "channel.updated", channel)
    if created is not None:
        emit_message(call, "message.new", channel, created)
    state = call.store.channel_state(channel, message_limit=0)
    state["message"] = call.store.message_view(created) if created else None
    return {"channel": state["channel"], "members": state["members"], "message": state["message"]}


def update_channel_partial(call: Call) -> dict[str, Any]:
    """``PATCH /channels/{type}/{id}`` (UpdateChannelPartial): set / unset custom fields."""
    _check_type(call)
    channel = call.store.require_channel(*call.params[:2])
    require_owner(channel, call.actor, "UpdateChannel")
    to_set = call.body.get("set") or {}
    to_unset = call.body.get("unset") or []
    if not isinstance(to_set, dict) or not isinstance(to_unset, list):
        raise input_error("set must be an object and unset a list")
    for name in to_set:
        if name in CHANNEL_RESERVED_FIELDS:
            raise input_error(f"field {name} cannot be set with a partial update")
    updated = {**channel.data, **to_set}
    for name in to_unset:
        updated.pop(name, None)
    channel.data = _custom(updated)
    channel.updated_at = call.now
    emit_channel(call, "channel.updated", channel)
    state = call.store.channel_state(channel, message_limit=0)
    return {"channel": state["channel"], "members": state["members"]}


def _delete(call: Call, channel: ChannelRecord, hard: bool) -> dict[str, Any]:
    store, now = call.store, call.now
    view = store.channel_view(channel)
    if hard:
        channel.deleted_at = now
        emit_channel(call, "channel.deleted", channel, hard_delete=True)
        store.drop_channel(channel.cid)
        view["deleted_at"] = now
        return view
    channel.deleted_at = now
    channel.updated_at = now
    emit_channel(call, "channel.deleted", channel, hard_delete=False)
    return store.channel_view(channel)


def delete_channel(call: Call) -> dict[str, Any]:
    """``DELETE /channels/{type}/{id}`` (DeleteChannel): soft unless ``hard_delete=true``."""
    _check_type(call)
    channel = call.store.require_channel(*call.params[:2])
    hard = as_bool(call.query.get("hard_delete", False))
    return {"channel": _delete(call, channel, hard)}


def delete_channels(call: Call) -> dict[str, Any]:
    """``POST /channels/delete`` (DeleteChannels): returns a completed task."""
    cids = check_batch(call.body.get("cids"), "cids", MAX_CHANNELS_PER_DELETE)
    if not cids:
        raise input_error("cids is a required field")
    hard = as_bool(call.body.get("hard_delete", False))
    result: dict[str, Any] = {}
    for cid in cids:
        channel = call.store.channels.get(str(cid))
        if channel is None or channel.deleted_at is not None:
            result[cid] = {"status": "error", "error": f"Can't find channel with id {cid}"}
            continue
        _delete(call, channel, hard)
        result[cid] = {"status": "ok"}
    return {"task_id": call.store.add_task(result, call.now, call.clock, call.task_seconds)}


def truncate_channel(call: Call) -> dict[str, Any]:
    """``POST /channels/{type}/{id}/truncate`` (TruncateChannel)."""
    _check_type(call)
    channel = call.store.require_channel(*call.params[:2])
    for message in call.store.messages.pop(channel.cid, []):
        call.store.message_cids.pop(message["id"], None)
    channel.updated_at = call.now
    emit_channel(call, "channel.truncated", channel)
    return {"channel": call.store.channel_view(channel)}


def _channel_field(channel: ChannelRecord, name: str) -> Any:
    builtin = {
        "cid": channel.cid,
        "id": channel.id,
        "type": channel.type,
        "members": list(channel.members),
        "member_count": len(channel.members),
        "created_by_id": channel.created_by,
        "created_at": channel.created_at,
        "updated_at": channel.updated_at,
        "last_updated": channel.updated_at,
        "last_message_at": channel.last_message_at,
        "frozen": False,
        "disabled": False,
    }
    if name in builtin:
        return builtin[name]
    return channel.data.get(name, MISSING)


def _candidates(store: Store, conditions: Any) -> Iterable[ChannelRecord]:
    """The channels a filter may match: those its ``cid`` names (Stream's index: the
    fastest filter, its docs say), else every channel."""
    named = named_values(conditions, "cid")
    if named is None:
        return store.channels.values()
    return [store.channels[cid] for cid in dict.fromkeys(named) if cid in store.channels]


def query_channels(call: Call) -> dict[str, Any]:
    """``POST /channels`` (QueryChannels)."""
    body = call.body
    conditions = body.get("filter_conditions") or {}
    found = [
        ch
        for ch in _candidates(call.store, conditions)
        if ch.deleted_at is None
        and can_read(ch, call.actor)
        and matches(conditions, partial(_channel_field, ch))
    ]
    found.sort(key=lambda ch: ch.seq, reverse=True)
    sort = normalize_sort(body.get("sort")) or [("updated_at", -1)]
    found = sort_items(found, sort, _channel_field)
    offset = read_offset(body.get("offset"))
    limit = clamp_limit(body.get("limit"), QUERY_CHANNELS_DEFAULT_LIMIT, QUERY_CHANNELS_MAX_LIMIT)
    message_limit = clamp_limit(body.get("message_limit"), 25, 300)
    member_limit = clamp_limit(body.get("member_limit"), 100, 100)
    page = found[offset : offset + limit]
    for ch in page:
        watch(call, ch)
    channels = [
        for_caller(
            call,
            ch,
            call.store.channel_state(ch, message_limit=message_limit, member_limit=member_limit),
        )
        for ch in page
    ]
    return {"channels": channels}


def _member_field(store: Store, member: dict[str, Any], name: str) -> Any:
    if name in ("id", "user_id"):
        return member["user_id"]
    if name in member:
        return member[name]
    return store.users.get(member["user_id"], {}).get(name, MISSING)


# Stream's keyset options of QueryMembers: members whose user id is past a value
_USER_ID_BOUNDS: dict[str, Callable[[str, str], bool]] = {
    "user_id_gt": operator.gt,
    "user_id_gte": operator.ge,
    "user_id_lt": operator.lt,
    "user_id_lte": operator.le,
}


def _within_bounds(options: Mapping[str, Any], member: dict[str, Any]) -> bool:
    return all(
        keep(str(member["user_id"]), str(options[name]))
        for name, keep in _USER_ID_BOUNDS.items()
        if options.get(name) is not None
    )


def query_members(call: Call) -> dict[str, Any]:
    """``GET /members?payload=`` (QueryMembers): with ``user_id_gt`` (``_gte``, ``_lt``,
    ``_lte``), those past a user id (Stream's pagination by user id)."""
    options = call.payload()
    channel_type, channel_id = str(options.get("type", "")), str(options.get("id", ""))
    if not channel_type or not channel_id:
        raise input_error("type and id are required fields")
    channel = call.store.require_channel(channel_type, channel_id)
    require(channel, call.actor, "ReadChannel")
    store = call.store
    conditions = options.get("filter_conditions") or {}
    members = sorted(channel.members.values(), key=lambda m: (m["created_at"], m["user_id"]))
    found = [
        m
        for m in members
        if _within_bounds(options, m) and matches(conditions, partial(_member_field, store, m))
    ]
    found = sort_items(found, normalize_sort(options.get("sort")), partial(_member_field, store))
    offset = read_offset(options.get("offset"))
    limit = clamp_limit(options.get("limit"), QUERY_MEMBERS_DEFAULT_LIMIT, QUERY_MEMBERS_MAX_LIMIT)
    return {"members": [store.member_view(m) for m in found[offset : offset + limit]]}
