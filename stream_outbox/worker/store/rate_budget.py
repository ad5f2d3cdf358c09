"""The shared rate budget: all workers together stay under Stream's per-endpoint rates.

Stream counts calls per endpoint over one minute, and per second (the minute's
limit over 30). Each endpoint's budget is spread over one-second windows at 95% of
the minute's average, so workers neither burst at the start of a minute nor,
together, exceed either limit.

**Less than one round trip a call.** A window is a counter in Redis
(``{prefix}:{endpoint}@{n}``, ``n`` the window's number since the epoch) that every
process increments: one pipelined ``SET NX PX`` (the counter's lifetime, set once) and
``INCRBY``. A process takes a *lease* of several slots at once and hands them to its
threads without asking Redis again; the slots the counter grants are those within the
window's limit, so all processes together never pass it. A lease's size follows the
process's demand (``lease_size``): it doubles when the process spends a lease within its
window, up to a sixteenth of the window's limit, and halves when a window ends with
slots of it unused, so a process that calls seldom takes one slot at a time and leaves
the rest to the others. A window found spent is remembered, so the process's other calls
wait without asking Redis again. Counting past the limit lets nothing more through (the
window is spent either way), so there is no read-modify-write to retry under contention.

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


_LEASE_SHARE = 16  # a lease holds at most this fraction of a window's limit
_LEASE_MAX = 64


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


def lease_size(current: int, window_limit: int, *, spent: bool, unused: bool) -> int:
    """The next lease's size: doubled after a lease spent within its window, halved after
    a window left with slots unused; between 1 and a sixteenth of the limit (at most 64)."""
    ceiling = max(1, min(_LEASE_MAX, window_limit // _LEASE_SHARE))
    if unused:
        current //= 2
    elif spent:
        current *= 2
    return max(1, min(ceiling, current))


@dataclass
class _Lease:
    """Slots of one window this process holds; its size is that of the next lease."""

    number: int = -1
    left: int = 0
    size: int = 1


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
        self._leases: dict[str, _Lease] = {}
        self._leasing = threading.Lock()
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
        self._leases = {}
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
            if self._take(endpoint, window, number):
                return
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
        """A slot of the window, from this process's lease or a new one; whether one came."""
        with self._leasing:
            lease = self._leases.setdefault(endpoint, _Lease())
            if lease.number == number and lease.left > 0:
                lease.left -= 1  # before the spent mark: slots leased stay usable
                return True
            if self._spent.get(endpoint) == number:
                return False  # found spent here: no need to ask Redis again
            lease.size = lease_size(
                lease.size,
                window.limit,
                spent=lease.number == number,
                unused=lease.number != number and lease.left > 0,
            )
            lease.number, lease.left = number, 0
            size = lease.size
        granted = self._lease(endpoint, window, number, size)
        with self._leasing:
            if granted == 0:
                self._spent[endpoint] = number
                return False
            if lease.number == number:
                lease.left += granted - 1
        return True

    def _lease(self, endpoint: str, window: _Window, number: int, size: int) -> int:
        """Count ``size`` calls in the window (one round trip); how many are within its
        limit."""
        key = f"{self._prefix}:{endpoint}@{number}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(key, 0, nx=True, px=2 * window.ms)
        pipe.incrby(key, size)
        _, count = pipe.execute()
        return max(0, min(size, window.limit - (int(count) - size)))
