"""Stream's per-endpoint rate limits: the published defaults, and Stream's own answer.

Stream limits each endpoint per minute (and per second: the minute's limit over 30)
for server-side calls (``docs/debugging_and_cli/rate_limits.md``, "Rate Limits by
Endpoint", self-serve defaults). An app's real limits can differ (plans, dynamic
limits): ``GET /rate_limits`` (the SDK's ``get_rate_limits``) tells them, and the
worker reads it at start-up and now and then, falling back to this table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MAX_CHANNELS_PER_DELETE",
    "MAX_DATA_BYTES",
    "MAX_MEMBERS_PER_CALL",
    "MAX_USERS_PER_CALL",
    "MESSAGES_PER_QUERY",
    "PUBLISHED_LIMITS",
    "QUERY_CHANNELS_PER_CALL",
    "data_too_large",
    "limits_from_answer",
]

MAX_USERS_PER_CALL = 100  # Stream: at most 100 users per upsert (and per batch delete)
MAX_CHANNELS_PER_DELETE = 100  # Stream: at most 100 channels per DeleteChannels call
MAX_MEMBERS_PER_CALL = 100  # Stream: at most 100 members added, removed or listed per call
MESSAGES_PER_QUERY = 300  # Stream: at most 300 messages in one channel query's page
# Stream: QueryChannels answers at most 30 channels a call, each with at most 100 members
# (``limit`` max 30, ``member_limit`` max 100: docs/channels/query_channels.md)
QUERY_CHANNELS_PER_CALL = 30
# Stream takes at most 5 KB of custom data on a user, a channel or a message.
MAX_DATA_BYTES = 5 * 1024

# The endpoints the worker calls, by the names the gateway gives them, with Stream's
# published per-minute defaults ("Edit Users" and "Update Users" are UpdateUsers,
# "Activate User" is ReactivateUser; the batch endpoints, which Stream's table does not
# list, are given their single forms' limits: DeleteChannels that of "Delete Channel").
PUBLISHED_LIMITS: dict[str, int] = {
    "GetOrCreateChannel": 10_000,
    "QueryChannels": 10_000,
    "MarkRead": 10_000,
    "SendMessage": 1_000,
    "UpdateMessagePartial": 1_000,
    "DeleteMessage": 1_000,
    "QueryUsers": 1_000,
    "UpdateUsers": 300,
    "UpdateChannel": 300,
    "UpdateChannelPartial": 300,
    "QueryMembers": 300,
    "DeactivateUser": 60,
    "DeactivateUsers": 60,
    "ReactivateUser": 60,
    "DeleteUser": 60,
    "DeleteUsers": 60,
    "RestoreUsers": 60,
    "DeleteChannel": 60,
    "DeleteChannels": 60,
}


def data_too_large(kind: str, name: str, data: Mapping[str, Any]) -> str | None:
    """Why Stream would refuse ``data`` (over :data:`MAX_DATA_BYTES` as JSON), or None."""
    size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
    if size <= MAX_DATA_BYTES:
        return None
    return f"{kind} {name}: {size} bytes of data, Stream takes at most {MAX_DATA_BYTES} (5 KB)"


def limits_from_answer(answer: Mapping[str, Any]) -> dict[str, int]:
    """Per-minute limits by endpoint from ``get_rate_limits(server_side=True)``'s answer
    (``{"server_side": {"SendMessage": {"limit": 1000, "remaining": ..., "reset": ...}}}``).

    Endpoints without a whole, positive ``limit`` are left out (the caller keeps its own).
    """
    found: dict[str, int] = {}
    for endpoint, entry in (answer.get("server_side") or {}).items():
        limit = entry.get("limit") if isinstance(entry, Mapping) else None
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            found[str(endpoint)] = limit
    return found
