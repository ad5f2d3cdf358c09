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
        limits: dict[str, int],
        *,
        headroom: float = 0.9,
        max_wait: float = 5.0,
        prefix: str = "stream_outbox:rate",
    ) -> None:
        backend = RedisBackend(client=redis)
        self.max_wait = max_wait
        self.limiters = {
            endpoint: _limiter(backend, f"{prefix}:{endpoint}", per_minute * headroom)
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
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientStreamError(
                    "local rate budget exhausted", endpoint=endpoint, retry_after=1.0
                )
            time.sleep(min(remaining, _BUCKET_S - time.time() % _BUCKET_S + 0.001))
