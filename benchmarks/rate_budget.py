"""The shared rate budget's own cost: acquisitions a second and CPU per acquisition.

``--threads`` threads of one process take ``--calls`` slots each from a budget too
large to bind (every acquisition succeeds at once), on the real Redis, first through
the budget (a process leases its slots, one pipelined round trip a lease), then
through Dramatiq's ``BucketRateLimiter``, which the budget used before (a ``WATCH``/
``GET``/``MULTI``/``EXEC`` increment, retried under contention). Each run prints its acquisitions a
second, its process CPU per acquisition and its Redis commands per acquisition
(``INFO commandstats`` before and after); the best of ``--repeat`` runs.

    uv run python -m benchmarks.rate_budget [--threads 8] [--calls 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from dramatiq.rate_limits import BucketRateLimiter
from dramatiq.rate_limits.backends import RedisBackend
from redis import Redis

from stream_outbox.worker.store.rate_budget import RedisRateBudget

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
_HUGE = 10**9  # calls a minute: no acquisition ever waits


def _commands(redis: Redis) -> int:
    stats: dict[str, Any] = redis.info("commandstats")
    return sum(int(entry["calls"]) for entry in stats.values())


def _run(redis: Redis, acquire: Callable[[], None], threads: int, calls: int) -> dict[str, float]:
    def work() -> None:
        for _ in range(calls):
            acquire()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    commands, started, cpu = _commands(redis), time.perf_counter(), time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed, spent = time.perf_counter() - started, time.process_time() - cpu
    total = threads * calls
    return {
        "per_s": total / elapsed,
        "cpu_us": spent / total * 1e6,
        "commands": (_commands(redis) - commands - 1) / total,  # less INFO itself
    }


def measure(threads: int, calls: int, repeat: int) -> dict[str, dict[str, float]]:
    """The best run of each limiter (by acquisitions a second)."""
    redis = Redis.from_url(REDIS_URL)
    prefix = f"bench-budget-{os.getpid()}"
    budget = RedisRateBudget(redis, {"SendMessage": _HUGE}, prefix=prefix)
    bucket = BucketRateLimiter(  # type: ignore[no-untyped-call]
        RedisBackend(client=redis), f"{prefix}:dramatiq", limit=_HUGE, bucket=1000
    )

    def dramatiq_acquire() -> None:
        with bucket.acquire(raise_on_failure=False):
            pass

    limiters = {"budget": lambda: budget.acquire("SendMessage"), "dramatiq": dramatiq_acquire}
    best: dict[str, dict[str, float]] = {}
    try:
        for _ in range(repeat):
            for name, acquire in limiters.items():
                run = _run(redis, acquire, threads, calls)
                if name not in best or run["per_s"] > best[name]["per_s"]:
                    best[name] = run
    finally:
        for key in redis.scan_iter(f"{prefix}*"):
            redis.delete(key)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    best = measure(args.threads, args.calls, args.repeat)
    if args.json:
        print(json.dumps(best))
        return
    for name, run in best.items():
        print(
            f"{name:9} {run['per_s']:9,.0f} acquisitions/s  {run['cpu_us']:7.1f} us CPU each  "
            f"{run['commands']:5.2f} Redis commands each"
        )
    ratio = best["budget"]["per_s"] / best["dramatiq"]["per_s"]
    print(f"budget / BucketRateLimiter: {ratio:.1f}x the acquisitions a second")


if __name__ == "__main__":
    main()
