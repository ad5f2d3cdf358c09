"""The SDK's channel calls, as plain functions of a client (what the gateway times,
counts and budgets): one Stream endpoint each."""

from __future__ import annotations

from typing import Any

from stream_chat import StreamChat

from stream_outbox.worker.stream.limits import MAX_MEMBERS_PER_CALL

__all__ = [
    "add_members",
    "create_channel",
    "delete_channel",
    "mark_read",
    "query_members",
    "query_messages",
    "remove_members",
    "send_message",
    "update_members",
    "update_partial",
]


def create_channel(
    client: StreamChat, ctype: str, cid: str, data: dict[str, Any], created_by: str
) -> Any:
    return client.channel(ctype, cid, data).create(created_by)


def query_members(client: StreamChat, ctype: str, cid: str, after: str | None) -> Any:
    # By user id, after the last one seen (Stream's offset stops at 1,000)
    by_id = [{"field": "user_id", "direction": 1}]
    keyset = {"user_id_gt": after} if after is not None else {}
    channel = client.channel(ctype, cid)
    return channel.query_members({}, by_id, limit=MAX_MEMBERS_PER_CALL, **keyset)


def query_messages(client: StreamChat, ctype: str, cid: str, messages: dict[str, Any]) -> Any:
    # The channel query (GetOrCreateChannel): the channel's state with a page of messages
    return client.channel(ctype, cid).query(messages=messages, members={"limit": 0})


def update_partial(
    client: StreamChat, ctype: str, cid: str, set_: dict[str, Any], unset: list[str]
) -> Any:
    return client.channel(ctype, cid).update_partial(set_, unset)


def add_members(client: StreamChat, ctype: str, cid: str, user_ids: list[str]) -> Any:
    return client.channel(ctype, cid).add_members(user_ids)


def remove_members(client: StreamChat, ctype: str, cid: str, user_ids: list[str]) -> Any:
    return client.channel(ctype, cid).remove_members(user_ids)


def update_members(
    client: StreamChat, ctype: str, cid: str, add: list[str], remove: list[str]
) -> Any:
    """One UpdateChannel adding and removing members (Stream takes both keys at once)."""
    body = {key: ids for key, ids in (("add_members", add), ("remove_members", remove)) if ids}
    channel = client.channel(ctype, cid)
    return client.post(channel.url, data=body)


def delete_channel(client: StreamChat, ctype: str, cid: str, hard: bool) -> Any:
    return client.channel(ctype, cid).delete(hard=hard)


def send_message(
    client: StreamChat, ctype: str, cid: str, message: dict[str, Any], user_id: str
) -> Any:
    return client.channel(ctype, cid).send_message(message, user_id)


def mark_read(client: StreamChat, ctype: str, cid: str, user_id: str, message_id: str) -> Any:
    """Server-side MarkRead: the channel read for ``user_id`` up to ``message_id``."""
    return client.channel(ctype, cid).mark_read(user_id, message_id=message_id)
