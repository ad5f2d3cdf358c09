"""Applying a validated import file to the store (all of it, or nothing: the caller
validates first).

``upsert`` overwrites an existing item (custom data replaced, ``created_at`` kept
unless the file gives one); ``insert`` skips items that already exist ("The Insert mode
will skip import items if they already exist", ``docs/migrating/import.md``).
"""

from __future__ import annotations

from typing import Any

from stream_emulator.import_file import Item
from stream_emulator.store import ChannelRecord, Store, new_member, new_message

# Fields of a member item the emulator keeps next to Stream's own member fields.
_MEMBER_ID_FIELDS = frozenset({"channel_type", "channel_id", "channel_member_ids"})
_MESSAGE_ID_FIELDS = frozenset({"channel_type", "channel_id", "channel_member_ids", "user"})
_CHANNEL_OWN = frozenset({"id", "type", "created_by", "created_at", "member_ids"})
_NOT_UPSERTED = {"member": frozenset({"last_read", "hide_channel"})}


def apply(items: list[Item], store: Store, mode: str, now: str) -> dict[str, int]:
    """Write every item; return how many of each type were written (skips excluded)."""
    written = {"users": 0, "channels": 0, "members": 0, "messages": 0, "reactions": 0}
    touched: set[str] = set()
    for item in items:
        writer = _WRITERS.get(item.type)
        if writer is not None and writer(item.data, store, mode == "insert", now, touched):
            written[f"{item.type}s"] += 1
    for cid in touched:  # imported messages keep their times: keep channels in time order
        store.messages[cid].sort(key=lambda m: str(m.get("created_at", "")))
    return written


def _user(data: dict[str, Any], store: Store, insert: bool, now: str, _: set[str]) -> bool:
    existing = store.users.get(data["id"])
    if existing is not None and insert:
        return False
    user: dict[str, Any] = {"role": "user", "banned": False, "online": False}
    user.update(data)
    user["created_at"] = data.get("created_at") or (existing or {}).get("created_at") or now
    user["updated_at"] = now
    if existing is None:
        store.user_seq[data["id"]] = store.next_seq()
    store.users[data["id"]] = user
    return True


def _channel(data: dict[str, Any], store: Store, insert: bool, now: str, _: set[str]) -> bool:
    cid = f"{data['type']}:{data['id']}"
    existing = store.channels.get(cid)
    if existing is not None and existing.deleted_at is None:
        if insert:
            return False
        existing.created_by = data["created_by"]
        existing.created_at = data.get("created_at") or existing.created_at
        existing.data = {k: v for k, v in data.items() if k not in _CHANNEL_OWN}
        existing.updated_at = now
        return True
    if existing is not None:  # a soft-deleted channel comes back empty
        store.drop_channel(cid, keep_message_ids=True)
    store.channels[cid] = ChannelRecord(
        type=data["type"],
        id=data["id"],
        created_by=data["created_by"],
        created_at=data.get("created_at") or now,
        seq=store.next_seq(),
        data={k: v for k, v in data.items() if k not in _CHANNEL_OWN},
        updated_at=now,
    )
    return True


def _member(data: dict[str, Any], store: Store, insert: bool, now: str, _: set[str]) -> bool:
    channel = store.channels[f"{data['channel_type']}:{data['channel_id']}"]
    user_id = data["user_id"]
    existing = channel.members.get(user_id)
    if existing is not None and insert:
        return False
    member = new_member(user_id, channel.created_by, now)
    kept = {}
    if existing is not None:  # last_read and hide_channel are not upserted
        kept = {k: existing[k] for k in _NOT_UPSERTED["member"] if k in existing}
        member["created_at"] = existing.get("created_at", now)
    member.update({k: v for k, v in data.items() if k not in _MEMBER_ID_FIELDS})
    member.update(kept)
    if data.get("is_moderator") and "channel_role" not in data:
        member["channel_role"] = "channel_moderator"
    member["updated_at"] = now
    channel.members[user_id] = member
    return True


def _message(data: dict[str, Any], store: Store, insert: bool, now: str, touched: set[str]) -> bool:
    cid = f"{data['channel_type']}:{data['channel_id']}"
    message_id = data["id"]
    messages = store.messages.setdefault(cid, [])
    index = next((i for i, m in enumerate(messages) if m["id"] == message_id), None)
    if index is not None and insert:
        return False
    record = new_message(text="")
    record.update({k: v for k, v in data.items() if k not in _MESSAGE_ID_FIELDS})
    record.update({"user_id": data["user"], "cid": cid})
    record["created_at"] = data.get("created_at") or now
    record["updated_at"] = record["created_at"]
    if index is None:
        messages.append(record)
    else:
        messages[index] = record
    store.message_cids[message_id] = cid
    touched.add(cid)
    return True


def _reaction(data: dict[str, Any], store: Store, insert: bool, now: str, _: set[str]) -> bool:
    cid = store.message_cids[data["message_id"]]
    message = next(m for m in store.messages[cid] if m["id"] == data["message_id"])
    reactions: list[dict[str, Any]] = message.setdefault("latest_reactions", [])
    key = (data["user_id"], data["type"])
    index = next((i for i, r in enumerate(reactions) if (r["user_id"], r["type"]) == key), None)
    if index is not None and insert:
        return False
    if index is None:
        reactions.append(dict(data))
        counts = message.setdefault("reaction_counts", {})
        counts[data["type"]] = counts.get(data["type"], 0) + 1
    else:
        reactions[index] = dict(data)
    return True


_WRITERS = {
    "user": _user,
    "channel": _channel,
    "member": _member,
    "message": _message,
    "reaction": _reaction,
}
