"""The events a call causes, shaped as Stream's webhooks carry them.

Shapes follow Stream's webhook events page (https://getstream.io/chat/docs/python/webhook_events/,
the ``message.new`` example): ``type``, ``cid``, ``channel_type``, ``channel_id``, the
``message`` with its ``user``, the acting ``user``, ``created_at``, and for message and
channel events the channel's ``members`` ("truncated up to 50 members"); the event
object's fields (``member``, ``channel``, ``user``) as ``docs/features/events.md`` lists
them. ``request_info`` is added by the core, which knows the request.
"""

from __future__ import annotations

from typing import Any

from stream_outbox.emulator.endpoints.call import LIVE_ONLY, Call
from stream_outbox.emulator.state.hub import Connection, Hub
from stream_outbox.emulator.state.store import ChannelRecord, Store

MAX_EVENT_MEMBERS = 50


def _base(call: Call, event_type: str, channel: ChannelRecord) -> dict[str, Any]:
    return {
        "type": event_type,
        "cid": channel.cid,
        "channel_type": channel.type,
        "channel_id": channel.id,
        "created_at": call.now,
    }


def _members(call: Call, channel: ChannelRecord) -> list[dict[str, Any]]:
    members = list(channel.members.values())[:MAX_EVENT_MEMBERS]
    return [call.store.member_view(m) for m in members]


def _user(call: Call, user_id: str | None) -> dict[str, Any] | None:
    return call.store.user_view(user_id) if user_id else None


def emit_message(
    call: Call,
    event_type: str,
    channel: ChannelRecord,
    message: dict[str, Any],
    user_id: str | None = None,
    *,
    live_only: bool = False,
    **extra: Any,
) -> None:
    """``message.new``, ``.updated``, ``.deleted`` (with ``hard_delete``), ``.undeleted``:
    ``user`` is who acted (the caller, else the one named in the call, else the author).
    ``live_only``: for the watchers, not the webhooks (a thread's parent after a reply:
    stream-chat-js takes a parent's ``reply_count`` from events, it does not count)."""

    def build() -> dict[str, Any]:
        event = _base(call, event_type, channel)
        actor = call.actor or user_id or message.get("user_id")
        event.update(
            {
                "message": call.store.message_view(message),
                "user": _user(call, actor),
                "members": _members(call, channel),
                "channel_member_count": len(channel.members),
                **extra,
            }
        )
        return event

    call.emit(event_type, build, channel.cid, live_only=live_only)


def emit_read(
    call: Call, channel: ChannelRecord, user_id: str, last_read_message_id: str | None
) -> None:
    """``message.read``: the reader (``user``, with ``channel_last_read_at``) and the channel."""

    def build() -> dict[str, Any]:
        event = _base(call, "message.read", channel)
        user = dict(call.store.user_view(user_id))
        user["channel_last_read_at"] = call.now
        user["channel_unread_count"] = 0
        event.update(
            {
                "user": user,
                "channel": call.store.channel_view(channel),
                "last_read_message_id": last_read_message_id,
            }
        )
        return event

    call.emit("message.read", build, channel.cid)


def emit_member(
    call: Call, event_type: str, channel: ChannelRecord, member: dict[str, Any]
) -> None:
    """``member.added`` / ``member.removed`` / ``member.updated``: the ``member`` and its
    ``user``."""

    def build() -> dict[str, Any]:
        event = _base(call, event_type, channel)
        event.update(
            {
                "member": call.store.member_view(member),
                "user": call.store.user_view(member["user_id"]),
                "channel_member_count": len(channel.members),
            }
        )
        return event

    call.emit(event_type, build, channel.cid)


def emit_channel(call: Call, event_type: str, channel: ChannelRecord, **extra: Any) -> None:
    """``channel.created``, ``.updated``, ``.deleted``, ``.truncated``: the ``channel`` (as
    it is after the change), the acting ``user`` when there is one, the ``members``."""

    def build() -> dict[str, Any]:
        event = _base(call, event_type, channel)
        event["channel"] = call.store.channel_view(channel)
        event["members"] = _members(call, channel)
        if call.actor:
            event["user"] = call.store.user_view(call.actor)
        event.update(extra)
        return event

    call.emit(event_type, build, channel.cid)


def emit_user(call: Call, event_type: str, user_id: str) -> None:
    """``user.updated`` (and other user events): the ``user``, no channel."""
    call.emit(
        event_type,
        lambda: {"type": event_type, "user": call.store.user_view(user_id), "created_at": call.now},
    )


def emit_client_event(
    call: Call, channel: ChannelRecord, user_id: str, fields: dict[str, Any]
) -> dict[str, Any]:
    """SendEvent: ``typing.start``, ``typing.stop`` or a custom event of ``user_id`` in the
    channel (its ``parent_id`` and custom fields kept); return the event."""
    event = {**fields, **_base(call, str(fields["type"]), channel)}
    event["user"] = call.store.user_view(user_id)
    call.emit(event["type"], lambda: dict(event), channel.cid)
    return event


def emit_watching(call: Call, event_type: str, channel: ChannelRecord, user_id: str) -> None:
    """``user.watching.start`` / ``.stop``: the user and the channel's ``watcher_count``."""
    call.emit(
        event_type,
        lambda: watching_event(call.store, call.hub, event_type, channel, user_id, call.now),
        channel.cid,
    )


def watching_event(
    store: Store, hub: Hub, event_type: str, channel: ChannelRecord, user_id: str, now: str
) -> dict[str, Any]:
    """A ``user.watching.*`` event (also sent when a watcher's socket closes)."""
    return {
        "type": event_type,
        "cid": channel.cid,
        "channel_type": channel.type,
        "channel_id": channel.id,
        "created_at": now,
        "user": store.user_view(user_id),
        "watcher_count": hub.watcher_count(channel.cid),
    }


_NOT_LIVE = ("members", "request_info", LIVE_ONLY)


def live_event(
    store: Store, hub: Hub, event: dict[str, Any], connection: Connection
) -> dict[str, Any]:
    """An event as a watcher's WebSocket gets it."""
    live = {k: v for k, v in event.items() if k not in _NOT_LIVE}
    if event["type"] == "message.new":
        channel = store.channels.get(event["cid"])
        total, channels = store.unread_totals(connection.user_id)
        live["watcher_count"] = hub.watcher_count(event["cid"])
        live["total_unread_count"] = total
        live["unread_channels"] = channels
        live["unread_count"] = total
        if channel is not None:
            live["channel_last_message_at"] = channel.last_message_at
    return live


# Events of a channel that its members' other connections hear of (Stream's
# ``notification.*``): to a member whose connection does not watch the channel, or, for a
# membership change, to the user added or removed.
NOTIFICATIONS = {
    "message.new": "notification.message_new",
    "member.added": "notification.added_to_channel",
    "member.removed": "notification.removed_from_channel",
}


def notifications(
    store: Store, hub: Hub, event: dict[str, Any]
) -> list[tuple[Connection, dict[str, Any]]]:
    """The ``notification.*`` events a channel event causes, each with its connection.
    A removed member's connections stop watching the channel first."""
    kind, cid = NOTIFICATIONS.get(event["type"]), event.get("cid")
    channel = store.channels.get(cid) if kind and cid else None
    if kind is None or channel is None or not hub.connections:
        return []
    member = event.get("member")
    users = {member["user_id"]} if member else set(channel.members)
    if event["type"] == "member.removed":
        for connection in hub.watching(channel.cid):
            if connection.user_id in users:
                hub.unwatch(connection.id, channel.cid)
    found = []
    for connection in list(hub.connections.values()):
        if connection.user_id in users and channel.cid not in connection.watching:
            found.append((connection, _notification(store, kind, channel, event, connection)))
    return found


def _notification(
    store: Store, kind: str, channel: ChannelRecord, event: dict[str, Any], to: Connection
) -> dict[str, Any]:
    note: dict[str, Any] = {
        "type": kind,
        "cid": channel.cid,
        "channel_type": channel.type,
        "channel_id": channel.id,
        "channel": store.channel_view(channel),
        "created_at": event["created_at"],
    }
    for name in ("message", "member", "user"):
        if event.get(name) is not None:
            note[name] = event[name]
    if kind == "notification.message_new":
        total, channels = store.unread_totals(to.user_id)
        note.update(
            {"unread_count": total, "total_unread_count": total, "unread_channels": channels}
        )
    return note
