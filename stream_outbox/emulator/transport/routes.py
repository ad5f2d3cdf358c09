"""The route table: HTTP method + path -> Stream endpoint name + handler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from stream_outbox.emulator.endpoints import (
    app,
    channels,
    imports,
    messages,
    reads,
    user_lifecycle,
    users,
    watching,
)
from stream_outbox.emulator.endpoints.call import Call, Handler
from stream_outbox.emulator.rules.errors import not_found


def get_rate_limits(call: Call) -> dict[str, Any]:
    """``GET /rate_limits`` (GetRateLimits): per platform, per endpoint."""
    wanted = [e for e in call.query.get("endpoints", "").split(",") if e]
    names = wanted or sorted(ENDPOINT_NAMES)
    platforms = [p for p in ("server_side", "android", "ios", "web") if call.query.get(p) == "true"]
    result: dict[str, Any] = {}
    for platform in platforms or ["server_side", "android", "ios", "web"]:
        limits: dict[str, Any] = {}
        for name in names:
            verdict = call.limits.peek(name, call.clock)
            # the emulator only sees server-side traffic: other platforms are untouched
            remaining = verdict.remaining if platform == "server_side" else verdict.limit
            limits[name] = {"limit": verdict.limit, "remaining": remaining, "reset": verdict.reset}
        result[platform] = limits
    return result


def get_task(call: Call) -> dict[str, Any]:
    """``GET /tasks/{id}`` (GetTask): ``pending``, ``running``, then ``completed`` once the
    emulator's ``task_seconds`` have passed (the work itself is done at once)."""
    task = call.store.tasks.get(call.params[0])
    if task is None:
        raise not_found(f"task {call.params[0]} not found")
    return task.view(call.clock)


@dataclass(frozen=True)
class Route:
    """A matched route."""

    endpoint: str
    handler: Handler
    params: tuple[str, ...]


_TABLE: list[tuple[str, str, str, Handler]] = [
    ("POST", "users", "UpdateUsers", users.update_users),
    ("PATCH", "users", "UpdateUsersPartial", users.update_users_partial),
    ("GET", "users", "QueryUsers", users.query_users),
    ("POST", "users/delete", "DeleteUsers", user_lifecycle.delete_users),
    ("POST", "users/deactivate", "DeactivateUsers", user_lifecycle.deactivate_users),
    ("POST", "users/restore", "RestoreUsers", user_lifecycle.restore_users),
    ("DELETE", "users/*", "DeleteUser", user_lifecycle.delete_user),
    ("POST", "users/*/deactivate", "DeactivateUser", user_lifecycle.deactivate_user),
    ("POST", "users/*/reactivate", "ReactivateUser", user_lifecycle.reactivate_user),
    ("POST", "channels", "QueryChannels", channels.query_channels),
    ("POST", "channels/delete", "DeleteChannels", channels.delete_channels),
    ("POST", "channels/*/query", "GetOrCreateChannel", channels.get_or_create_channel),
    ("POST", "channels/*/*/query", "GetOrCreateChannel", channels.get_or_create_channel),
    ("POST", "channels/*/*/message", "SendMessage", messages.send_message),
    ("GET", "channels/*/*/messages", "GetManyMessages", messages.get_many_messages),
    ("POST", "channels/*/*/truncate", "TruncateChannel", channels.truncate_channel),
    ("POST", "channels/*/*/read", "MarkRead", reads.mark_read),
    ("POST", "channels/*/*/event", "SendEvent", watching.send_event),
    ("POST", "channels/*/*/stop-watching", "StopWatchingChannel", watching.stop_watching),
    ("POST", "channels/*/*", "UpdateChannel", channels.update_channel),
    ("PATCH", "channels/*/*", "UpdateChannelPartial", channels.update_channel_partial),
    ("DELETE", "channels/*/*", "DeleteChannel", channels.delete_channel),
    ("GET", "members", "QueryMembers", channels.query_members),
    ("GET", "messages/*", "GetMessage", messages.get_message),
    ("POST", "messages/*", "UpdateMessage", messages.update_message),
    ("PUT", "messages/*", "UpdateMessagePartial", messages.update_message_partial),
    ("DELETE", "messages/*", "DeleteMessage", messages.delete_message),
    ("POST", "messages/*/undelete", "UndeleteMessage", messages.undelete_message),
    ("GET", "messages/*/replies", "GetReplies", messages.get_replies),
    ("GET", "app", "GetApp", app.get_app),
    ("PATCH", "app", "UpdateApp", app.update_app),
    ("GET", "rate_limits", "GetRateLimits", get_rate_limits),
    ("GET", "tasks/*", "GetTask", get_task),
    ("POST", "import_urls", "CreateImportURL", imports.create_import_url),
    ("POST", "imports", "CreateImport", imports.create_import),
    ("GET", "imports", "ListImports", imports.list_imports),
    ("GET", "imports/*", "GetImport", imports.get_import),
]

ENDPOINT_NAMES = frozenset(name for _, _, name, _ in _TABLE)

_INDEX: dict[tuple[str, int], list[tuple[tuple[str, ...], str, Handler]]] = {}
for _method, _pattern, _name, _handler in _TABLE:
    _parts = tuple(_pattern.split("/"))
    _INDEX.setdefault((_method, len(_parts)), []).append((_parts, _name, _handler))


def match(method: str, path: str) -> Route | None:
    """Find the route for ``method`` and ``path`` (``/users``, ``/channels/t/id`` ...)."""
    segments = [unquote(s) for s in path.strip("/").split("/")]
    for pattern, name, handler in _INDEX.get((method, len(segments)), ()):
        params: list[str] = []
        for want, got in zip(pattern, segments, strict=True):
            if want == "*":
                params.append(got)
            elif want != got:
                break
        else:
            return Route(name, handler, tuple(params))
    return None
