"""The shared rate budget: all workers together stay under Stream's per-endpoint rates.

Stream counts calls per endpoint over one minute. Each endpoint's budget is
spread over one-second buckets in Redis (Dramatiq's ``BucketRateLimiter``), so
workers neither burst at the start of a minute nor, together, exceed it.
"""

from __future__ import annotations

import math
import time

from dramatiq.rate_limits import BucketRateLimiter
from dramatiq.rate_limits.backends import RedisBackend
from redis import Redis

from worker.errors import TransientStreamError

__all__ = ["RedisRateBudget"]


class RedisRateBudget:
    """Per-endpoint budgets (calls per minute) shared through Redis."""

    def __init__(
        self,
        redis: Redis,
        limits: dict[str, int],
        *,
        headroom: float = 0.9,
        max_wait: float = 5.0,
        prefix: str = "stream_outbox:rate",
    ) -> None:
        backend = RedisBackend(client=redis)
        self.max_wait = max_wait
        self.limiters = {
            endpoint: BucketRateLimiter(  # type: ignore[no-untyped-call]
                backend,
                f"{prefix}:{endpoint}",
                limit=max(1, math.floor(per_minute * headroom / 60)),
                bucket=1000,
            )
            for endpoint, per_minute in limits.items()
        }

    def acquire(self, endpoint: str) -> None:
        """Wait for a slot of ``endpoint``; a transient error when none comes in ``max_wait``."""
        limiter = self.limiters.get(endpoint)
        if limiter is None:
            return
        deadline = time.monotonic() + self.max_wait
        while True:
            with limiter.acquire(raise_on_failure=False) as acquired:
                if acquired:
                    return
            if time.monotonic() >= deadline:
                raise TransientStreamError(
                    "local rate budget exhausted", endpoint=endpoint, retry_after=1.0
                )
            time.sleep(1.0 - time.time() % 1.0 + 0.001)
