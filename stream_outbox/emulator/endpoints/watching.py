"""What a WebSocket client does in a channel beyond messages: watching it (a channel query
or QueryChannels with ``watch`` and the caller's ``connection_id``), stopping, and
sending events (``channel.keystroke()`` / ``stopTyping()`` send ``typing.start`` and
``typing.stop`` through SendEvent).

Answers to a client carry what stream-chat-js reads of a channel: ``watcher_count``
and ``watchers`` (the users watching), the caller's ``membership`` and ``own_capabilities``.
"""

from __future__ import annotations

from typing import Any

from stream_outbox.emulator.endpoints.call import Call
from stream_outbox.emulator.endpoints.events import emit_client_event, emit_watching
from stream_outbox.emulator.rules.errors import input_error
from stream_outbox.emulator.rules.permissions import capabilities, require
from stream_outbox.emulator.rules.validation import as_bool, clamp_limit
from stream_outbox.emulator.state.store import ChannelRecord

MAX_WATCHERS = 300
DEFAULT_WATCHERS = 100  # the emulator's choice: Stream does not document its default


def watch(call: Call, channel: ChannelRecord) -> None:
    """Register the caller's connection as a watcher (``watch: true``); the other watchers
    are told (``user.watching.start``)."""
    if not as_bool(call.option("watch", False)):
        return
    connection = call.connection()
    if connection is not None and call.hub.watch(connection, channel.cid):
        emit_watching(call, "user.watching.start", channel, connection.user_id)


def for_caller(call: Call, channel: ChannelRecord, state: dict[str, Any]) -> dict[str, Any]:
    """A channel state with its watchers (the users) and, client-side, the caller's own view."""
    cid = channel.cid
    state["watcher_count"] = call.hub.watcher_count(cid)
    asked = call.body.get("watchers")
    limit = asked.get("limit") if isinstance(asked, dict) else None
    ids = call.hub.watcher_ids(cid)[: clamp_limit(limit, DEFAULT_WATCHERS, MAX_WATCHERS)]
    # stream-chat-react's header shows a DM's other member "Online" from these
    state["watchers"] = [call.store.user_view(uid) for uid in ids]
    if call.actor is not None:
        member = channel.members.get(call.actor)
        state["membership"] = call.store.member_view(member) if member else None
        state["channel"]["own_capabilities"] = capabilities(channel, call.actor)
    return state


def stop_watching(call: Call) -> dict[str, Any]:
    """``POST /channels/{type}/{id}/stop-watching`` (StopWatchingChannel)."""
    channel = call.store.require_channel(*call.params[:2])
    connection = call.connection()
    if connection is not None and call.hub.unwatch(connection.id, channel.cid):
        emit_watching(call, "user.watching.stop", channel, connection.user_id)
    return {}


def _sender(call: Call, event: dict[str, Any]) -> str:
    """The event's user: the caller client-side; server-side ``user_id`` or ``user.id``."""
    if call.actor is not None:
        return call.actor
    user = event.get("user")
    user_id = event.get("user_id") or (user.get("id") if isinstance(user, dict) else None)
    if not isinstance(user_id, str) or not user_id:
        raise input_error("event.user or event.user_id is a required field")
    call.store.require_live_user(user_id)
    return user_id


def send_event(call: Call) -> dict[str, Any]:
    """``POST /channels/{type}/{id}/event`` (SendEvent): ``typing.start``, ``typing.stop``
    or a custom event, to the channel's watchers; the answer is the event."""
    channel = call.store.require_channel(*call.params[:2])
    event = call.body.get("event")
    if not isinstance(event, dict):
        raise input_error("event is a required field")
    event_type = event.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise input_error("event.type is a required field")
    require(channel, call.actor, "SendCustomEvent")
    user_id = _sender(call, event)
    fields = {k: v for k, v in event.items() if k not in ("user", "user_id")}
    return {"event": emit_client_event(call, channel, user_id, fields)}
