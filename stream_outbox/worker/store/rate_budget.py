"""The shared rate budget: all workers together stay under Stream's per-endpoint rates.

Stream counts calls per endpoint over one minute, and per second (the minute's
limit over 30). Each endpoint's budget is spread over one-second windows at 95% of
the minute's average, so workers neither burst at the start of a minute nor,
together, exceed either limit.

**One round trip a call.** A window is a counter in Redis (``{prefix}:{endpoint}@{n}``,
``n`` the window's number since the epoch) that every process increments: one
pipelined ``SET NX PX`` (the counter's lifetime, set once) and ``INCR``. A call whose
count is within the window's limit goes; one past it waits for the next window, and
the process remembers the window as spent, so its other calls wait without asking
Redis again. Counting past the limit lets nothing more through (the window is spent
either way), so there is no read-modify-write to retry under contention.

The limits can be refreshed (``refresh``, every ``refresh_every`` seconds): Stream
tells an app its real limits, which its plan or its load may change. A budget that
runs dry asks again sooner (``starved_refresh`` seconds after the last answer at the
earliest): limits read while Stream had lowered them for a while must not throttle the
workers for the rest of the interval once it has raised them again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from redis import Redis

from stream_outbox.worker.errors import BudgetExhausted, TransientStreamError

__all__ = ["RedisRateBudget"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Window:
    """At most ``limit`` calls of an endpoint per window of ``ms`` milliseconds."""

    limit: int
    ms: int


def _window(per_minute: float) -> _Window:
    """Calls per one-second window; budgets under 60 a minute get one call per longer
    window."""
    per_second = per_minute / 60
    if per_second >= 1:
        return _Window(math.floor(per_second), 1000)
    return _Window(1, math.ceil(60_000 / max(per_minute, 1e-9)))


class RedisRateBudget:
    """Per-endpoint budgets (calls per minute) shared through Redis."""

    def __init__(
        self,
        redis: Redis,
        limits: Mapping[str, int],
        *,
        headroom: float = 0.95,
        max_wait: float = 5.0,
        prefix: str = "stream_outbox:rate",
        refresh: Callable[[], Mapping[str, int]] | None = None,
        refresh_every: float = 600.0,
        starved_refresh: float = 15.0,
        stopping: threading.Event | None = None,
    ) -> None:
        self._redis = redis
        self._prefix, self._headroom = prefix, headroom
        self.max_wait = max_wait
        self.limits: dict[str, int] = {}
        self.windows: dict[str, _Window] = {}
        self._spent: dict[str, int] = {}  # endpoint -> the last window found spent here
        self.set_limits(limits)
        self._refresh, self._refresh_every = refresh, refresh_every
        self._starved_refresh = starved_refresh
        self._stopping = stopping  # set when the process shuts down: waits end at once
        self._refreshing = threading.Lock()
        self._next_refresh = 0.0 if refresh is not None else math.inf
        self._asked_at = -math.inf

    def set_limits(self, limits: Mapping[str, int]) -> None:
        """Use these per-minute limits from now on (endpoints not named are not limited)."""
        self.windows = {
            endpoint: _window(per_min * self._headroom) for endpoint, per_min in limits.items()
        }
        self._spent = {}
        self.limits = dict(limits)

    def refresh_now(self) -> None:
        """Ask for the limits now (a failure keeps the current ones, and is logged)."""
        if self._refresh is None or not self._refreshing.acquire(blocking=False):
            return  # another thread is at it, or this is its own call for the limits
        try:
            self._asked_at = time.monotonic()
            self._next_refresh = self._asked_at + self._refresh_every
            self.set_limits(self._refresh())
            log.info("rate limits: %s", self.limits)
        except Exception as exc:
            log.warning("rate limits not refreshed (%s): keeping %s", exc, self.limits)
        finally:
            self._refreshing.release()

    def acquire(self, endpoint: str) -> None:
        """Wait for a slot of ``endpoint``; a transient error when none comes in ``max_wait``
        (or at once, once the process is stopping)."""
        if time.monotonic() >= self._next_refresh:
            self.refresh_now()
        window = self.windows.get(endpoint)
        if window is None:
            return
        deadline = time.monotonic() + self.max_wait
        while True:
            number = int(time.time() * 1000) // window.ms
            if self._spent.get(endpoint) != number and self._take(endpoint, window, number):
                return
            self._spent[endpoint] = number
            if self._stopping is not None and self._stopping.is_set():
                raise TransientStreamError("worker stopping: no wait for a slot", endpoint=endpoint)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if time.monotonic() - self._asked_at >= self._starved_refresh:
                    self.refresh_now()  # for the next call: this one's wait is over
                raise BudgetExhausted(
                    "local rate budget exhausted", endpoint=endpoint, retry_after=1.0
                )
            next_window = (number + 1) * window.ms / 1000
            time.sleep(min(remaining, next_window - time.time() + 0.001))

    def _take(self, endpoint: str, window: _Window, number: int) -> bool:
        """Count a call in the window (one round trip); whether it is within the limit."""
        key = f"{self._prefix}:{endpoint}@{number}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(key, 0, nx=True, px=2 * window.ms)
        pipe.incr(key)
        _, count = pipe.execute()
        return int(count) <= window.limit
