"""Per-target locks in Redis: reconciles of one target never run at the same time."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from redis import Redis

from stream_outbox.worker.errors import RetryableError

__all__ = ["LockLost", "TargetBusy", "TargetLocks"]

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


# Take every free lock of KEYS (value ARGV[1], lease ARGV[2] ms); returns 1-based
# positions of the keys taken. ARGV[3] = "all": all or nothing (none kept if one is held).
_TAKE = """
local taken = {}
for i, key in ipairs(KEYS) do
    if redis.call('set', key, ARGV[1], 'NX', 'PX', ARGV[2]) then
        taken[#taken + 1] = i
    elseif ARGV[3] == 'all' then
        for _, j in ipairs(taken) do redis.call('del', KEYS[j]) end
        return {}
    end
end
return taken
"""


class TargetBusy(RetryableError):
    """Another worker holds one of the targets."""


class LockLost(RetryableError):
    """A lock expired or vanished while held: another reconcile may have overlapped this
    one, so its targets are reconciled again (level-triggered, the later read wins)."""


class TargetLocks:
    """All-or-nothing locks on a set of targets, with a lease so a dead worker's expire."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "stream_outbox:lock",
        lease: float = 120.0,
        stopping: threading.Event | None = None,
    ):
        self.redis = redis
        self.stopping = stopping  # set when the process shuts down: waits end at once
        self.prefix = prefix
        self.lease_ms = int(lease * 1000)
        self._release = redis.register_script(_RELEASE)
        self._take = redis.register_script(_TAKE)

    @contextmanager
    def hold(self, kind: str, ids: Sequence[str], wait: float = 10.0) -> Iterator[None]:
        """Hold every ``kind:id`` lock for the block; :class:`TargetBusy` after ``wait``
        seconds, or at once when the process is stopping."""
        keys = sorted({f"{self.prefix}:{kind}:{target_id}" for target_id in ids})
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        delay = 0.005
        while not self._try(keys, token):
            if self.stopping is not None and self.stopping.is_set():
                raise TargetBusy(f"{kind} target busy: {', '.join(ids[:3])} (worker stopping)")
            if time.monotonic() >= deadline:
                raise TargetBusy(f"{kind} target busy: {', '.join(ids[:3])}")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        try:
            yield
        except BaseException:
            self._release(keys=keys, args=[token])
            raise
        self._released_all(kind, keys, token)

    @contextmanager
    def hold_free(self, kind: str, ids: Sequence[str]) -> Iterator[list[str]]:
        """Hold the locks of those targets that are free now, without waiting; yields their ids."""
        keys = [f"{self.prefix}:{kind}:{target_id}" for target_id in ids]
        token = uuid.uuid4().hex
        taken = self._take(keys=keys, args=[token, self.lease_ms, "free"]) if keys else []
        held = [keys[int(n) - 1] for n in taken]
        try:
            yield [ids[int(n) - 1] for n in taken]
        except BaseException:
            if held:
                self._release(keys=held, args=[token])
            raise
        if held:
            self._released_all(kind, held, token)

    def _released_all(self, kind: str, keys: list[str], token: str) -> None:
        """Release our locks; :class:`LockLost` when some were no longer ours to release."""
        released = int(self._release(keys=keys, args=[token]))
        if released < len(keys):
            raise LockLost(
                f"{len(keys) - released} of {len(keys)} {kind} locks were lost while held "
                "(lease ran out, or Redis restarted): reconciling again"
            )

    def _try(self, keys: list[str], token: str) -> bool:
        """Take every lock of ``keys`` or none, in one atomic script call."""
        if not keys:
            return True
        return bool(self._take(keys=keys, args=[token, self.lease_ms, "all"]))
