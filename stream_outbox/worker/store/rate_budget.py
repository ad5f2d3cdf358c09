"""The shared rate budget: all workers together stay under Stream's per-endpoint rates.

Stream counts calls per endpoint over one minute, and per second (the minute's
limit over 30). Each endpoint's budget is spread over one-second buckets in Redis
(Dramatiq's ``BucketRateLimiter``) at 95% of the minute's average, so workers
neither burst at the start of a minute nor, together, exceed either limit.

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

from dramatiq.rate_limits import BucketRateLimiter
from dramatiq.rate_limits.backends import RedisBackend
from redis import Redis

from stream_outbox.worker.errors import TransientStreamError

__all__ = ["RedisRateBudget"]

log = logging.getLogger(__name__)


_BUCKET_S = 1.0


def _limiter(backend: RedisBackend, key: str, per_minute: float) -> BucketRateLimiter:
    """Calls per one-second bucket; budgets under 60 a minute get one call per longer bucket."""
    per_second = per_minute / 60
    if per_second >= 1:
        return BucketRateLimiter(backend, key, limit=math.floor(per_second), bucket=1000)  # type: ignore[no-untyped-call]
    bucket_ms = math.ceil(60_000 / max(per_minute, 1e-9))
    return BucketRateLimiter(backend, key, limit=1, bucket=bucket_ms)  # type: ignore[no-untyped-call]


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
        self._backend = RedisBackend(client=redis)
        self._prefix, self._headroom = prefix, headroom
        self.max_wait = max_wait
        self.limits: dict[str, int] = {}
        self.limiters: dict[str, BucketRateLimiter] = {}
        self.set_limits(limits)
        self._refresh, self._refresh_every = refresh, refresh_every
        self._starved_refresh = starved_refresh
        self._stopping = stopping  # set when the process shuts down: waits end at once
        self._refreshing = threading.Lock()
        self._next_refresh = 0.0 if refresh is not None else math.inf
        self._asked_at = -math.inf

    def set_limits(self, limits: Mapping[str, int]) -> None:
        """Use these per-minute limits from now on (endpoints not named are not limited)."""
        self.limiters = {
            endpoint: _limiter(
                self._backend, f"{self._prefix}:{endpoint}", per_min * self._headroom
            )
            for endpoint, per_min in limits.items()
        }
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
        limiter = self.limiters.get(endpoint)
        if limiter is None:
            return
        deadline = time.monotonic() + self.max_wait
        while True:
            with limiter.acquire(raise_on_failure=False) as acquired:
                if acquired:
                    return
            if self._stopping is not None and self._stopping.is_set():
                raise TransientStreamError("worker stopping: no wait for a slot", endpoint=endpoint)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if time.monotonic() - self._asked_at >= self._starved_refresh:
                    self.refresh_now()  # for the next call: this one's wait is over
                raise TransientStreamError(
                    "local rate budget exhausted", endpoint=endpoint, retry_after=1.0
                )
            time.sleep(min(remaining, _BUCKET_S - time.time() % _BUCKET_S + 0.001))
