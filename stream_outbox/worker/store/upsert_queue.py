"""A queue in Redis of new users to upsert, shared by every job of every process.

Jobs that need users Stream does not hold yet add them here; one job at a time (the
flusher, under a lock with a short lease) takes them 100 at a time, oldest first, and
upserts each hundred in one UpdateUsers call, while the others wait for their users to
become known. A burst of conversations among new users then upserts each user once,
in full calls, rather than once per job that needs it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from redis import Redis

__all__ = ["UpsertQueue"]

# Renew the flusher's lease if it is still ours (ARGV[1] token, ARGV[2] lease in ms)
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class UpsertQueue:
    """The pending users (a sorted set by time added) and the flusher's lock."""

    def __init__(self, redis: Redis, *, prefix: str, lease: float = 10.0) -> None:
        self.redis = redis
        self.pending_key = f"{prefix}:users_to_upsert"
        self.flusher_key = f"{prefix}:users_flusher"
        self.lease_ms = int(lease * 1000)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def offer(self, user_ids: list[str]) -> None:
        """Add users to the queue (those already in it keep their place)."""
        if user_ids:
            self.redis.zadd(self.pending_key, dict.fromkeys(user_ids, time.time()), nx=True)

    def take_flusher(self) -> str | None:
        """Become the flusher if no one is; the token to renew and release it with."""
        token = uuid.uuid4().hex
        taken = self.redis.set(self.flusher_key, token, nx=True, px=self.lease_ms)
        return token if taken else None

    def renew(self, token: str) -> bool:
        """Extend the flusher's lease; False when it ran out (another may flush now)."""
        return bool(self._renew(keys=[self.flusher_key], args=[token, self.lease_ms]))

    def release(self, token: str) -> None:
        """Stop being the flusher."""
        self._release(keys=[self.flusher_key], args=[token])

    def flushing(self) -> bool:
        """Whether a flusher holds its lease now (a dead one's runs out within the lease)."""
        return bool(self.redis.exists(self.flusher_key))

    def holds_any(self, user_ids: list[str]) -> bool:
        """Whether any of these users is still in the queue."""
        return any(score is not None for score in self.redis.zmscore(self.pending_key, user_ids))

    def pop(self, count: int = 100, gather: float = 0.05) -> list[str]:
        """Take up to ``count`` users, oldest first, off the queue; while it has fewer and
        keeps growing (other jobs adding theirs), wait for them, ``gather`` seconds at most
        (a lone user waits one look, 10 ms)."""
        deadline = time.monotonic() + gather
        size = int(self.redis.zcard(self.pending_key))
        while 0 < size < count and time.monotonic() < deadline:
            time.sleep(0.01)
            grown = int(self.redis.zcard(self.pending_key))
            if grown == size:
                break
            size = grown
        popped: list[Any] = list(self.redis.zpopmin(self.pending_key, count))
        return [m.decode() if isinstance(m, bytes) else str(m) for m, _ in popped]
