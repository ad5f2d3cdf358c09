"""Per-target locks in Redis: reconciles of one target never run at the same time."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from redis import Redis

__all__ = ["TargetBusy", "TargetLocks"]

_RELEASE = """
local released = 0
for i, key in ipairs(KEYS) do
    if redis.call('get', key) == ARGV[1] then
        redis.call('del', key)
        released = released + 1
    end
end
return released
"""


class TargetBusy(Exception):
    """Another worker holds one of the targets."""


class TargetLocks:
    """All-or-nothing locks on a set of targets, with a lease so a dead worker's expire."""

    def __init__(self, redis: Redis, *, prefix: str = "stream_outbox:lock", lease: float = 120.0):
        self.redis = redis
        self.prefix = prefix
        self.lease_ms = int(lease * 1000)
        self._release = redis.register_script(_RELEASE)

    @contextmanager
    def hold(self, kind: str, ids: Sequence[str], wait: float = 10.0) -> Iterator[None]:
        """Hold every ``kind:id`` lock for the block; :class:`TargetBusy` after ``wait`` seconds."""
        keys = sorted(f"{self.prefix}:{kind}:{target_id}" for target_id in ids)
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        delay = 0.005
        while not self._try(keys, token):
            if time.monotonic() >= deadline:
                raise TargetBusy(f"{kind} target busy: {', '.join(ids[:3])}")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        try:
            yield
        finally:
            self._release(keys=keys, args=[token])

    @contextmanager
    def hold_free(self, kind: str, ids: Sequence[str]) -> Iterator[list[str]]:
        """Hold the locks of those targets that are free now, without waiting; yields their ids."""
        keys = {f"{self.prefix}:{kind}:{target_id}": target_id for target_id in ids}
        token = uuid.uuid4().hex
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, token, nx=True, px=self.lease_ms)
        held = [key for key, ok in zip(keys, pipe.execute(), strict=True) if ok]
        try:
            yield [keys[key] for key in held]
        finally:
            if held:
                self._release(keys=held, args=[token])

    def _try(self, keys: list[str], token: str) -> bool:
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, token, nx=True, px=self.lease_ms)
        taken = pipe.execute()
        if all(taken):
            return True
        got = [key for key, ok in zip(keys, taken, strict=True) if ok]
        if got:
            self._release(keys=got, args=[token])
        return False
