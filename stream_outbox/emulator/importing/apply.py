"""Applying a validated import file to the store (the caller validates first).

``upsert`` writes every item; an existing item gets the file's values for its
upserted fields (omitted ones go back to their defaults) and custom data replaced,
and keeps the fields without a tick in the page's "upserted" column (a user's mutes, a
channel's banned users, a member's ``last_read`` and ``hide_channel``). ``insert``
skips items that already exist, by their key ("The Insert mode will skip import items
if they already exist", ``docs/migrating/import.md``). Devices and future channel bans
are validated, not stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stream_outbox.emulator.importing.file import Line, parse_item
from stream_outbox.emulator.importing.rules import NOT_UPSERTED, distinct_cid, item_cid
from stream_outbox.emulator.state.store import ChannelRecord, Store, new_member, new_message

_MEMBER_ID_FIELDS = frozenset({"channel_type", "channel_id", "channel_member_ids"})
_MESSAGE_ID_FIELDS = frozenset({"channel_type", "channel_id", "channel_member_ids", "user"})
_CHANNEL_OWN = frozenset({"id", "type", "created_by", "created_at", "member_ids"})
# What a message keeps from its earlier self: reactions are items of their own.
_MESSAGE_KEPT = ("latest_reactions", "reaction_counts", "reaction_scores", "reply_count")


class Applier:
    """Writes validated lines to a store, counting what was written."""

    def __init__(self, store: Store, mode: str, now: str) -> None:
        self.store = store
        self.insert = mode == "insert"
        self.now = now
        self.written = {"users": 0, "channels": 0, "members": 0, "messages": 0, "reactions": 0}
        self.unsorted: set[str] = set()
        self.records: dict[str, dict[str, Any]] = {}  # messages written, for reactions
        self.implied: set[str] = set()  # members a distinct channel of this file gave

    def apply(self, lines: Iterable[Line]) -> None:
        """Write each line's item (blank lines skipped)."""
        for _, raw in lines:
            if not raw.strip():
                continue
            item_type, data = parse_item(raw)
            writer = _WRITERS.get(item_type)
            if writer is not None and writer(self, data):
                self.written[f"{item_type}s"] += 1

    def finish(self) -> dict[str, int]:
        """Put channels whose messages came out of time order back in order; return
        the counts."""
        for cid in self.unsorted:
            self.store.messages[cid].sort(key=lambda m: str(m.get("created_at", "")))
        self.unsorted.clear()
        return dict(self.written)


def _user(applier: Applier, data: dict[str, Any]) -> bool:
    store, now = applier.store, applier.now
    existing = store.users.get(data["id"])
    if existing is not None and applier.insert:
        return False
    user: dict[str, Any] = {"role": "user", "banned": False, "online": False}
    user.update(data)
    if existing is not None:
        for name in NOT_UPSERTED["user"]:
            user.pop(name, None)
            if name in existing:
                user[name] = existing[name]
    user["created_at"] = data.get("created_at") or (existing or {}).get("created_at") or now
    user["updated_at"] = now
    if existing is None:
        store.user_seq[data["id"]] = store.next_seq()
    store.users[data["id"]] = user
    return True


def _channel(applier: Applier, data: dict[str, Any]) -> bool:
    store, now = applier.store, applier.now
    member_ids = data.get("member_ids")
    if member_ids is not None:
        cid = distinct_cid(data["type"], member_ids)
        channel_id = cid.partition(":")[2]
    else:
        channel_id = data["id"]
        cid = f"{data['type']}:{channel_id}"
    custom = {k: v for k, v in data.items() if k not in _CHANNEL_OWN}
    existing = store.channels.get(cid)
    if existing is not None and existing.deleted_at is None:
        if applier.insert:
            return False
        custom.pop("banned_users", None)  # not upserted
        if "banned_users" in existing.data:
            custom["banned_users"] = existing.data["banned_users"]
        existing.created_by = data["created_by"]
        existing.created_at = data.get("created_at") or existing.created_at
        existing.data = custom
        existing.updated_at = now
        return True
    if existing is not None:  # a soft-deleted channel comes back empty
        store.drop_channel(cid, keep_message_ids=True)
    channel = ChannelRecord(
        type=data["type"],
        id=channel_id,
        created_by=data["created_by"],
        created_at=data.get("created_at") or now,
        seq=store.next_seq(),
        data=custom,
        updated_at=now,
    )
    for user_id in member_ids or ():  # a distinct channel's members are its id (inferred)
        member = new_member(user_id, channel.created_by, now)
        channel.members[user_id] = {**member, "updated_at": now}
        applier.implied.add(f"{cid}/{user_id}")
    store.channels[cid] = channel
    return True


def _member(applier: Applier, data: dict[str, Any]) -> bool:
    now = applier.now
    cid = item_cid(data)
    channel = applier.store.channels.get(cid)
    if channel is None:  # removed after the analysis
        return False
    user_id = data["user_id"]
    existing = channel.members.get(user_id)
    if f"{cid}/{user_id}" in applier.implied:  # its member item completes it
        existing = None
    if existing is not None and applier.insert:
        return False
    member = new_member(user_id, channel.created_by, now)
    kept = {}
    if existing is not None:
        kept = {k: existing[k] for k in NOT_UPSERTED["member"] if k in existing}
        member["created_at"] = existing.get("created_at", now)
    member.update({k: v for k, v in data.items() if k not in _MEMBER_ID_FIELDS})
    if existing is not None:
        for name in NOT_UPSERTED["member"]:
            member.pop(name, None)
    member.update(kept)
    if data.get("is_moderator") and "channel_role" not in data:
        member["channel_role"] = "channel_moderator"
    member["updated_at"] = now
    channel.members[user_id] = member
    return True


def _message(applier: Applier, data: dict[str, Any]) -> bool:
    store = applier.store
    cid = item_cid(data)
    if cid not in store.channels:  # removed after the analysis
        return False
    message_id = data["id"]
    messages = store.messages.setdefault(cid, [])
    index = None
    if store.message_cids.get(message_id) == cid:
        if applier.insert:
            return False
        index = next(i for i, m in enumerate(messages) if m["id"] == message_id)
    record = new_message(text="")
    if index is not None:
        record.update({k: messages[index][k] for k in _MESSAGE_KEPT if k in messages[index]})
    record.update({k: v for k, v in data.items() if k not in _MESSAGE_ID_FIELDS})
    record["user_id"] = data["user"]
    record["cid"] = cid
    created = record["created_at"] = data.get("created_at") or applier.now
    record["updated_at"] = created
    if index is not None:
        messages[index] = record
        applier.unsorted.add(cid)
    else:
        if messages and str(messages[-1].get("created_at", "")) > created:
            applier.unsorted.add(cid)
        messages.append(record)
    store.message_cids[message_id] = cid
    applier.records[message_id] = record
    return True


def _reaction(applier: Applier, data: dict[str, Any]) -> bool:
    store = applier.store
    cid = store.message_cids.get(data["message_id"])
    if cid is None:  # removed after the analysis
        return False
    message = applier.records.get(data["message_id"]) or next(
        m for m in store.messages[cid] if m["id"] == data["message_id"]
    )
    reactions: list[dict[str, Any]] = message.setdefault("latest_reactions", [])
    key = (data["user_id"], data["type"])
    index = next((i for i, r in enumerate(reactions) if (r["user_id"], r["type"]) == key), None)
    if index is not None and applier.insert:
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
