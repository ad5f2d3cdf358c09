"""In-memory records of users, channels, messages and async tasks.

The store itself is not thread-safe: ``EmulatorCore`` holds one lock around
every use of it.
"""

from __future__ import annotations

import html
import itertools
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stream_outbox.emulator.rules.errors import not_found, user_deleted
from stream_outbox.emulator.rules.hooks import Hook

# Fields Stream manages itself; a payload cannot set them.
USER_SERVER_FIELDS = frozenset(
    {"created_at", "updated_at", "last_active", "deactivated_at", "deleted_at", "online"}
)
CHANNEL_RESERVED_FIELDS = frozenset(
    {
        "id",
        "type",
        "cid",
        "members",
        "created_by",
        "created_by_id",
        "created_at",
        "updated_at",
        "deleted_at",
        "member_count",
        "config",
        "frozen",
        "disabled",
    }
)
MESSAGE_SERVER_FIELDS = frozenset(
    {
        "user",
        "user_id",
        "cid",
        "created_at",
        "updated_at",
        "deleted_at",
        "type",
        "message_text_updated_at",
    }
)


# Fields answers derive (``message_view``); a client's payload echoes them back (the JS
# client's ``updateMessage`` sends the message as it holds it), and they are not stored.
MESSAGE_DERIVED_FIELDS = frozenset(
    {
        "status",
        "shadowed",
        "pinned_at",
        "pinned_by",
        "deleted_reply_count",
        "thread_participants",
        "i18n",
        "quoted_message",
        "reaction_groups",
    }
)
_MESSAGE_VIEW_DEFAULTS: dict[str, Any] = {
    "pinned": False,
    "pinned_at": None,
    "pinned_by": None,
    "pin_expires": None,
    "shadowed": False,
    "status": "received",
    "deleted_reply_count": 0,
}


def _unread(messages: list[dict[str, Any]], member: dict[str, Any]) -> int:
    """Messages of others, not deleted, after the member's ``last_read`` (else its joining)."""
    since = member.get("last_read") or member.get("created_at") or ""
    user_id = member["user_id"]
    return sum(
        1
        for m in messages
        if m["created_at"] > since and m["user_id"] != user_id and not m.get("deleted_at")
    )


def new_message(**fields: Any) -> dict[str, Any]:
    """A message record with Stream's empty defaults, then ``fields``."""
    record: dict[str, Any] = {
        "attachments": [],
        "mentioned_users": [],
        "latest_reactions": [],
        "own_reactions": [],
        "reaction_counts": {},
        "reaction_scores": {},
        "reply_count": 0,
        "silent": False,
    }
    record.update(fields)
    return record


def new_member(user_id: str, created_by: str | None, now: str) -> dict[str, Any]:
    """A member record as Stream answers it (the creator is the owner)."""
    return {
        "user_id": user_id,
        "role": "owner" if user_id == created_by else "member",
        "channel_role": "channel_member",
        "banned": False,
        "shadow_banned": False,
        "notifications_muted": False,
        "created_at": now,
    }


# The features of Stream's ``messaging`` type the emulator serves over its WebSocket; the
# others are off (stream-chat-js and stream-chat-react hide what a config turns off).
_CONFIG_ON = ("typing_events", "read_events", "connect_events", "custom_events", "replies")
_CONFIG_OFF = (
    "reactions",
    "uploads",
    "search",
    "quotes",
    "mutes",
    "url_enrichment",
    "push_notifications",
    "polls",
    "reminders",
    "mark_messages_pending",
    "delivery_events",
    "user_message_reminders",
    "shared_locations",
    "count_messages",
    "skip_last_msg_update_for_system_msgs",
)


def channel_config(channel_type: str) -> dict[str, Any]:
    """A channel type's ``config`` as answers carry it: the message limit, and the features
    on (``read_events``: stream-chat-js's ``markRead`` sends nothing without it;
    ``typing_events``: nor does ``keystroke``)."""
    config: dict[str, Any] = {"name": channel_type, "max_message_length": 5000}
    config.update(dict.fromkeys(_CONFIG_ON, True))
    config.update(dict.fromkeys(_CONFIG_OFF, False))
    config.update(
        {
            "message_retention": "infinite",
            "automod": "disabled",
            "automod_behavior": "flag",
            "blocklist_behavior": "flag",
            "commands": [],
        }
    )
    return config


def now_iso() -> str:
    """Current UTC time in Stream's RFC 3339 format with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def unix_now() -> float:
    """Wall-clock seconds, used for rate-limit windows, budgets and import tasks."""
    return time.time()


@dataclass
class ChannelRecord:
    """A channel as stored by the emulator."""

    type: str
    id: str
    created_by: str
    created_at: str
    seq: int
    data: dict[str, Any] = field(default_factory=dict)
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    updated_at: str = ""
    deleted_at: str | None = None
    # The time of the newest message sent (Stream's last_message_at; queried and sorted on)
    last_message_at: str | None = None

    @property
    def cid(self) -> str:
        """``type:id``."""
        return f"{self.type}:{self.id}"


@dataclass
class TaskRecord:
    """An async task: its work is done when created, its status follows the clock."""

    id: str
    result: dict[str, Any]
    created_at: str
    started: float
    seconds: float

    def view(self, now: float) -> dict[str, Any]:
        """``GET /tasks/{id}``: ``pending``, ``running``, then ``completed`` with the result."""
        age = now - self.started
        status = "completed"
        if age < self.seconds / 2:
            status = "pending"
        elif age < self.seconds:
            status = "running"
        view: dict[str, Any] = {
            "task_id": self.id,
            "status": status,
            "created_at": self.created_at,
            "updated_at": self.created_at,
        }
        if status == "completed":
            view["result"] = self.result
        return view


@dataclass
class Store:
    """All emulated Stream state.

    ``users`` keeps soft-deleted users (``deleted_at`` set); ``deleted_user_ids`` the
    ids of hard-deleted ones, which stay taken. ``retired_message_ids`` are ids of
    messages of a soft-deleted channel that was re-created: hidden, but still taken.
    """

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    user_seq: dict[str, int] = field(default_factory=dict)
    deleted_user_ids: dict[str, str] = field(default_factory=dict)
    channels: dict[str, ChannelRecord] = field(default_factory=dict)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    message_cids: dict[str, str] = field(default_factory=dict)
    retired_message_ids: set[str] = field(default_factory=set)
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    # app settings given through ``update_app_settings`` (``GET /app`` shows them) and
    # the hooks they configure
    app_settings: dict[str, Any] = field(default_factory=dict)
    hooks: tuple[Hook, ...] = ()
    legacy_hook: Hook | None = None  # the one of ``webhook_url``, also in ``hooks``
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def next_seq(self) -> int:
        """Monotonic counter used to order records created in the same instant."""
        return next(self._counter)

    def hook_urls(self, event_type: str) -> list[str]:
        """The webhook URLs an event of ``event_type`` is delivered to."""
        return [hook.url for hook in self.hooks if hook.wants(event_type)]

    # ---- users -------------------------------------------------------------

    def user_view(self, user_id: str) -> dict[str, Any]:
        """The user object embedded in responses (a minimal stub if the user is gone)."""
        user = self.users.get(user_id)
        if user is None:
            return {"id": user_id, "role": "user", "deleted_at": self.deleted_user_ids.get(user_id)}
        return dict(user)

    def require_user(self, user_id: str) -> dict[str, Any]:
        """Return a stored user (soft-deleted ones too) or raise does-not-exist (404)."""
        user = self.users.get(user_id)
        if user is None:
            if user_id in self.deleted_user_ids:
                raise user_deleted(user_id)
            raise not_found(f'user "{user_id}" does not exist')
        return user

    def was_deleted(self, user_id: str) -> bool:
        """A soft- or hard-deleted user: its id cannot be used until a restore (soft)."""
        if user_id in self.deleted_user_ids:
            return True
        user = self.users.get(user_id)
        return user is not None and user.get("deleted_at") is not None

    def require_live_user(self, user_id: str) -> dict[str, Any]:
        """A user that exists and is not deleted; 404 code 16 otherwise."""
        if self.was_deleted(user_id):
            raise user_deleted(user_id)
        return self.require_user(user_id)

    def message_id_taken(self, message_id: str) -> bool:
        """Whether a message (even a hidden one of a re-created channel) holds this id."""
        return message_id in self.message_cids or message_id in self.retired_message_ids

    def put_user(self, payload: dict[str, Any], now: str) -> dict[str, Any]:
        """Create or fully replace a user, keeping ``created_at`` of an existing one."""
        user_id = payload["id"]
        existing = self.users.get(user_id)
        user: dict[str, Any] = {"role": "user", "banned": False, "online": False}
        user.update({k: v for k, v in payload.items() if k not in USER_SERVER_FIELDS})
        user["created_at"] = existing["created_at"] if existing else now
        user["updated_at"] = now
        if existing and existing.get("deactivated_at"):
            user["deactivated_at"] = existing["deactivated_at"]
        if existing is None:
            self.user_seq[user_id] = self.next_seq()
        self.users[user_id] = user
        return user

    # ---- channels ----------------------------------------------------------

    def require_channel(self, channel_type: str, channel_id: str) -> ChannelRecord:
        """Return a live (not soft-deleted) channel or raise does-not-exist."""
        cid = f"{channel_type}:{channel_id}"
        channel = self.channels.get(cid)
        if channel is None or channel.deleted_at is not None:
            raise not_found(f"Can't find channel with id {cid}")
        return channel

    def member_view(self, member: dict[str, Any]) -> dict[str, Any]:
        """A member object as the API returns it."""
        view = dict(member)
        view["user"] = self.user_view(member["user_id"])
        return view

    def channel_view(self, channel: ChannelRecord) -> dict[str, Any]:
        """The ``channel`` object: custom data flattened next to Stream's own fields."""
        view: dict[str, Any] = dict(channel.data)
        view.update(
            {
                "id": channel.id,
                "type": channel.type,
                "cid": channel.cid,
                "created_at": channel.created_at,
                "updated_at": channel.updated_at,
                "deleted_at": channel.deleted_at,
                "last_message_at": channel.last_message_at,
                "created_by": self.user_view(channel.created_by),
                "frozen": False,
                "disabled": False,
                "member_count": len(channel.members),
                "config": channel_config(channel.type),
            }
        )
        return view

    def channel_state(
        self,
        channel: ChannelRecord,
        message_limit: int = 25,
        member_limit: int = 100,
        before: str | None = None,
    ) -> dict[str, Any]:
        """``channel`` + ``members`` (the ``member_limit`` most recently added, newest
        first, as Stream answers them) + ``messages`` (the latest ``message_limit``, or those
        before the message ``before``: Stream's ``id_lt``) + ``read`` (the members'
        ``last_read``), as a channel query returns them."""
        members = list(channel.members.values())  # insertion order = join order
        newest = members[::-1][:member_limit]
        # a thread's replies are in the thread, not the channel, unless shown in both
        messages = [
            m
            for m in self.messages.get(channel.cid, [])
            if not m.get("parent_id") or m.get("show_in_channel")
        ]
        if before is not None:
            at = next((n for n, m in enumerate(messages) if m["id"] == before), len(messages))
            messages = messages[:at]
        recent = messages[-message_limit:] if message_limit > 0 else []
        all_messages = self.messages.get(channel.cid, [])
        return {
            "channel": self.channel_view(channel),
            "members": [self.member_view(m) for m in newest],
            "messages": [self.message_view(m) for m in recent],
            "pinned_messages": [],
            "read": [
                {
                    "user": self.user_view(m["user_id"]),
                    "last_read": m["last_read"],
                    "last_read_message_id": m.get("last_read_message_id"),
                    "unread_messages": _unread(all_messages, m),
                }
                for m in members
                if m.get("last_read")
            ],
            "watcher_count": 0,
        }

    def unread_messages(self, channel: ChannelRecord, user_id: str) -> int:
        """The member's unread messages in ``channel``: others' since its ``last_read``
        (since it joined when it has read nothing); 0 for a non-member."""
        member = channel.members.get(user_id)
        if member is None:
            return 0
        return _unread(self.messages.get(channel.cid, []), member)

    def unread_totals(self, user_id: str) -> tuple[int, int]:
        """The user's unread messages over its channels, and how many channels have some."""
        total = channels = 0
        for channel in self.channels.values():
            if channel.deleted_at is None and user_id in channel.members:
                unread = self.unread_messages(channel, user_id)
                total += unread
                channels += unread > 0
        return total, channels

    def drop_channel(self, cid: str, *, keep_message_ids: bool = False) -> None:
        """Remove a channel and its messages (hard delete); ``keep_message_ids`` keeps
        the messages' ids taken (a soft-deleted channel being re-created)."""
        self.channels.pop(cid, None)
        for message in self.messages.pop(cid, []):
            self.message_cids.pop(message["id"], None)
            if keep_message_ids:
                self.retired_message_ids.add(message["id"])

    def remove_memberships(self, user_id: str) -> None:
        """Take a user out of every channel (member counts drop)."""
        for channel in self.channels.values():
            channel.members.pop(user_id, None)

    # ---- messages ----------------------------------------------------------

    def message_view(self, message: dict[str, Any]) -> dict[str, Any]:
        """A message object with its author embedded, and the fields Stream adds that the
        clients render from (``html``, ``pinned``, ``status``...) when it has none."""
        view = dict(message)
        view["user"] = self.user_view(message["user_id"])
        for name, value in _MESSAGE_VIEW_DEFAULTS.items():
            view.setdefault(name, value)
        if "html" not in view:
            view["html"] = f"<p>{html.escape(str(message.get('text', '')))}</p>\n"
        return view

    # ---- tasks -------------------------------------------------------------

    def add_task(self, result: dict[str, Any], now: str, started: float, seconds: float) -> str:
        """Record an async task whose work is done, reported done after ``seconds``."""
        task_id = str(uuid.uuid4())
        self.tasks[task_id] = TaskRecord(task_id, result, now, started, seconds)
        return task_id

    # ---- inspection --------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The ``/_emulator/state`` document."""
        channels = {
            cid: {
                "type": ch.type,
                "id": ch.id,
                "data": dict(ch.data),
                "members": sorted(ch.members),
                # each member's record: channel_role, created_at, an imported last_read...
                "member_records": {uid: dict(m) for uid, m in ch.members.items()},
                "created_by": ch.created_by,
                "deleted_at": ch.deleted_at,
            }
            for cid, ch in self.channels.items()
        }
        messages = {cid: [dict(m) for m in msgs] for cid, msgs in self.messages.items() if msgs}
        return {
            "users": {uid: dict(u) for uid, u in self.users.items()},
            "channels": channels,
            "messages": messages,
        }
