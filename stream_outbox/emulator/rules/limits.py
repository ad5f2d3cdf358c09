"""Stream's rate limits: per endpoint, per minute and per second, and the API budget.

Stream limits each endpoint per minute and, to allow bursts at twice the average
rate and no faster, per second: the minute's limit divided by 30
(``docs/debugging_and_cli/rate_limits.md`` in GetStream/stream-chat-python). The
self-serve defaults below come from that page's "Rate Limits by Endpoint" table.
QueryChannels also has an API budget: database milliseconds per minute, a sliding
window (``docs/debugging_and_cli/api_budget.md``).

Not thread-safe by itself: ``EmulatorCore`` calls it under its lock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from stream_outbox.emulator.rules.faults import ANY_ENDPOINT, canonical

UNLIMITED = 1_000_000_000
BURST_DIVISOR = 30  # the per-second limit is the per-minute limit over 30
BUDGETED_ENDPOINT = "QueryChannels"
MAX_QUERY_COST_MS = 3000.0  # "each query's cost is capped ... (default: 3,000 ms)"

# Per-minute server-side defaults, by the emulator's endpoint names. Entries marked
# "inferred" are endpoints the table does not name, given the limit of the row they
# belong to; endpoints absent here (GetManyMessages, GetRateLimits, GetTask,
# RestoreUsers, UndeleteMessage, and the client's SendEvent, StopWatchingChannel,
# GetReplies) have no published limit and are not limited.
STREAM_DEFAULT_LIMITS: dict[str, int] = {
    "GetOrCreateChannel": 10_000,
    "GetApp": 10_000,
    "QueryChannels": 10_000,
    "MarkRead": 10_000,
    "DeleteMessage": 1_000,
    "GetMessage": 1_000,
    "QueryUsers": 1_000,
    "SendMessage": 1_000,
    "UpdateMessage": 1_000,
    "UpdateMessagePartial": 1_000,  # "Update Message" (inferred for the partial update)
    "QueryMembers": 300,
    "UpdateChannel": 300,
    "UpdateChannelPartial": 300,  # "Update Channel" (inferred for the partial update)
    "UpdateUsers": 300,
    "UpdateUsersPartial": 300,
    "ReactivateUser": 60,  # "Activate User"
    "DeactivateUser": 60,
    "DeactivateUsers": 60,  # "Deactivate User" (inferred for the batch endpoint)
    "DeleteUser": 60,
    "DeleteUsers": 60,  # "Delete User" (inferred for the batch endpoint)
    "DeleteChannel": 60,
    "DeleteChannels": 60,  # "Delete Channel" (inferred for the batch endpoint)
    "TruncateChannel": 60,
}


def canonical_limits(limits: dict[str, int]) -> dict[str, int]:
    """Rate limits keyed by Stream endpoint names (aliases resolved)."""
    return {canonical(name): int(limit) for name, limit in limits.items()}


@dataclass(frozen=True)
class Verdict:
    """The outcome of counting one call: allowed or not, and the ``X-RateLimit-*`` values."""

    allowed: bool
    limit: int
    remaining: int
    reset: int


@dataclass
class RateLimits:
    """Per-endpoint limits over fixed windows (minute and burst), and their usage.

    ``overrides`` (set by the user) win over ``STREAM_DEFAULT_LIMITS``, which apply
    only with ``stream_limits``; so does the burst limit (the limit over 30 per
    1/60 of the window, one second with Stream's minute). Calls refused with 429 do
    not count.
    """

    window_seconds: float = 60.0
    overrides: dict[str, int] = field(default_factory=dict)
    stream_limits: bool = True
    usage: dict[str, tuple[float, int]] = field(default_factory=dict)
    burst_usage: dict[str, tuple[float, int]] = field(default_factory=dict)

    def set_limit(self, endpoint: str, limit: int | None) -> None:
        """Allow ``limit`` calls per window; ``None`` drops the override (back to the default)."""
        name = canonical(endpoint)
        if limit is None:
            self.overrides.pop(name, None)
        else:
            self.overrides[name] = int(limit)

    def set_window(self, seconds: float) -> None:
        """Change the window length and forget current usage."""
        self.window_seconds = float(seconds)
        self.clear_usage()

    def clear_usage(self) -> None:
        """Forget every count."""
        self.usage.clear()
        self.burst_usage.clear()

    def configured(self) -> dict[str, int]:
        """The limits in force by endpoint (defaults and overrides, not ``"*"``)."""
        limits = dict(STREAM_DEFAULT_LIMITS) if self.stream_limits else {}
        limits.update({k: v for k, v in self.overrides.items() if k != ANY_ENDPOINT})
        return limits

    def limit_for(self, endpoint: str) -> int:
        """The limit of ``endpoint`` per window (a huge number when unlimited)."""
        if endpoint in self.overrides:
            return self.overrides[endpoint]
        if ANY_ENDPOINT in self.overrides:
            return self.overrides[ANY_ENDPOINT]
        if self.stream_limits:
            return STREAM_DEFAULT_LIMITS.get(endpoint, UNLIMITED)
        return UNLIMITED

    def burst_for(self, limit: int) -> int | None:
        """Calls allowed per burst window, or None when bursts are not limited."""
        if not self.stream_limits or limit >= UNLIMITED:
            return None
        return max(limit // BURST_DIVISOR, 1) if limit > 0 else 0

    def consume(self, endpoint: str, now: float) -> Verdict:
        """Count a call if both windows have room."""
        limit = self.limit_for(endpoint)
        start, end = _window(now, self.window_seconds)
        used = _used(self.usage, endpoint, start)
        if used >= limit:
            return Verdict(False, limit, 0, math.ceil(end))
        burst = self.burst_for(limit)
        if burst is not None:
            b_start, b_end = _window(now, self.window_seconds / 60)
            b_used = _used(self.burst_usage, endpoint, b_start)
            if b_used >= burst:
                # Inferred: the reset names the end of the burst window, when to retry.
                return Verdict(False, limit, limit - used, math.ceil(b_end))
            self.burst_usage[endpoint] = (b_start, b_used + 1)
        self.usage[endpoint] = (start, used + 1)
        return Verdict(True, limit, limit - used - 1, math.ceil(end))

    def refund(self, endpoint: str, now: float) -> None:
        """Uncount a call counted at ``now`` (refused afterwards for another reason)."""
        for usage, seconds in (
            (self.usage, self.window_seconds),
            (self.burst_usage, self.window_seconds / 60),
        ):
            start, _ = _window(now, seconds)
            used = _used(usage, endpoint, start)
            if used > 0:
                usage[endpoint] = (start, used - 1)

    def peek(self, endpoint: str, now: float) -> Verdict:
        """The ``X-RateLimit-*`` values without counting a call."""
        limit = self.limit_for(endpoint)
        start, end = _window(now, self.window_seconds)
        remaining = max(limit - _used(self.usage, endpoint, start), 0)
        return Verdict(remaining > 0, limit, remaining, math.ceil(end))


def _window(now: float, seconds: float) -> tuple[float, float]:
    start = math.floor(now / seconds) * seconds
    return start, start + seconds


def _used(usage: dict[str, tuple[float, int]], endpoint: str, start: float) -> int:
    window_start, count = usage.get(endpoint, (start, 0))
    return count if window_start == start else 0


@dataclass(frozen=True)
class BudgetVerdict:
    """The outcome of charging a budgeted call, and its ``X-Budget-*`` headers."""

    allowed: bool
    used_ms: float
    limit_ms: float
    retry_after: int = 0

    def headers(self) -> list[tuple[str, str]]:
        """``X-Budget-Used-Ms``, ``-Limit-Ms``, ``-Remaining-Ms`` (+ ``Retry-After`` on 429)."""
        headers = [
            ("x-budget-used-ms", str(round(self.used_ms))),
            ("x-budget-limit-ms", str(round(self.limit_ms))),
            ("x-budget-remaining-ms", str(round(max(self.limit_ms - self.used_ms, 0.0)))),
        ]
        if not self.allowed:
            headers.append(("retry-after", str(self.retry_after)))
        return headers


@dataclass
class ApiBudget:
    """A time budget (``limit_ms`` per window, sliding) charged ``cost_ms`` per call.

    Off (``limit_ms is None``) unless set: Stream does not publish an app's budget.
    A call's cost is capped at 3,000 ms as Stream caps it.
    """

    limit_ms: float | None = None
    cost_ms: float = 100.0
    window_seconds: float = 60.0
    spent: deque[tuple[float, float]] = field(default_factory=deque)

    def configure(self, limit_ms: float | None, cost_ms: float | None = None) -> None:
        """Set (or switch off with ``None``) the budget and forget what was spent."""
        self.limit_ms = None if limit_ms is None else float(limit_ms)
        if cost_ms is not None:
            self.cost_ms = float(cost_ms)
        self.spent.clear()

    def charge(self, now: float) -> BudgetVerdict | None:
        """Spend one call's cost, or refuse it; None when there is no budget."""
        if self.limit_ms is None:
            return None
        self._expire(now)
        used = sum(cost for _, cost in self.spent)
        cost = min(self.cost_ms, MAX_QUERY_COST_MS)
        if used + cost > self.limit_ms:
            wait = self._retry_after(now, cost, self.limit_ms)
            return BudgetVerdict(False, used, self.limit_ms, wait)
        self.spent.append((now, cost))
        return BudgetVerdict(True, used + cost, self.limit_ms)

    def _expire(self, now: float) -> None:
        while self.spent and self.spent[0][0] <= now - self.window_seconds:
            self.spent.popleft()

    def _retry_after(self, now: float, cost: float, limit_ms: float) -> int:
        """Whole seconds until enough of the window has slid out for ``cost`` to fit."""
        used = sum(c for _, c in self.spent)
        for at, spent in self.spent:
            used -= spent
            if used + cost <= limit_ms:
                return max(math.ceil(at + self.window_seconds - now), 1)
        return max(math.ceil(self.window_seconds), 1)
