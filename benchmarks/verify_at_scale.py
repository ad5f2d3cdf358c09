"""``admin verify`` at scale under Stream's default rate limits: its time and peak RSS.

A legacy app of two-person conversations (``--channels``, 100,000 by default, and half
as many users) is written with ``INSERT .. SELECT generate_series``, and what it wants
Stream to hold straight into the emulator's store (no API call), by
:mod:`tests.support.bulk_app`. The emulator runs in this process with Stream's
published limits on (per minute and per second); ``stream-outbox admin verify`` runs
as a subprocess, its Stream calls paced by the shared budget in Redis. Then the same
for ``admin verify --messages`` of those channels (without messages: what a channel's
walk costs) and of a conversation of ``--messages`` messages (150,000 by default),
imported at their original times. Printed: wall time, CPU, peak RSS (the
process's ``VmHWM``, read every 50 ms while it runs: ``wait4``'s ``ru_maxrss`` would
report this process's size, the emulator's state included, which Linux carries across
the ``exec``), Stream calls by endpoint and 429s.

    uv run python -m benchmarks.verify_at_scale [--channels 100000] [--messages 150000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from typing import Any

from redis import Redis
from sqlalchemy import create_engine

from benchmarks.ceiling import peak_rss_mb
from stream_outbox.emulator import Emulator
from stream_outbox.worker.runtime import delete_prefixed_keys
from stream_outbox.worker.store import audit
from stream_outbox.worker.store.cutover import EXPORT_ACTION
from tests.support.bulk_app import seed_database, seed_stream
from tests.support.database import outbox_database
from tests.support.processes import script
from tests.support.redis import new_prefix
from tests.support.settings import REDIS_URL

QUERY_MEMBERS_PER_MIN = 300  # Stream's limit of the endpoint the old verify called per channel
ENDPOINTS = ("QueryChannels", "QueryUsers", "QueryMembers", "GetOrCreateChannel", "GetRateLimits")


def run_verify(url: str, emu: Emulator, *flags: str) -> dict[str, Any]:
    """``stream-outbox admin verify --json`` in a subprocess: its time, CPU, peak RSS, and
    the Stream calls it made."""
    prefix = new_prefix("bench_verify")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": REDIS_URL,
        "OUTBOX_REDIS_PREFIX": prefix,
        "GETSTREAM_API_KEY": emu.api_key,
        "GETSTREAM_API_SECRET": emu.api_secret,
        "STREAM_CHAT_URL": emu.base_url,
    }
    emu.reset_request_counts()
    args = script("stream-outbox", "admin", "verify", "--json", *flags)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=err)
        peak, (status, usage) = _watched(proc.pid)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        printed, errors = out.read(), err.read().decode(errors="replace")
    delete_prefixed_keys(Redis.from_url(REDIS_URL), prefix)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"verify failed: {printed[-1000:]!r} {errors[-2000:]}")
    counts = emu.request_counts()
    return {
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": peak,
        "differences": json.loads(printed)["count"],
        "calls": {e: counts["counts"].get(e, 0) for e in ENDPOINTS},
        "status_429": sum(n for key, n in counts["by_status"].items() if key.endswith(" 429")),
    }


def _watched(pid: int) -> tuple[float, tuple[int, Any]]:
    """Wait for a process, reading its peak RSS (MB) as it runs; its status and usage."""
    peak = 0.0
    while True:
        with suppress(OSError):  # gone between two looks
            peak = max(peak, peak_rss_mb(pid))
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return peak, (status, usage)
        time.sleep(0.05)


def measure(channels: int, messages: int) -> dict[str, Any]:
    """Verify ``channels`` channels, then the history of a conversation of ``messages``."""
    results: dict[str, Any] = {"channels": channels, "messages": messages}
    with Emulator(stream_limits=True) as emu:
        with outbox_database("stream_outbox_bench_verify") as url:
            engine = create_engine(url)
            started = time.monotonic()
            results["users"] = seed_database(engine, channels)["users"]
            seed_stream(emu, engine)
            results["seed_seconds"] = time.monotonic() - started
            print(f"seeded {channels:,} channels; verifying", file=sys.stderr)
            results["verify"] = run_verify(url, emu)
            print("verifying them with --messages (no message in them)", file=sys.stderr)
            results["verify_each_history"] = run_verify(url, emu, "--messages")
            engine.dispose()
        if messages:
            emu.reset()
            with outbox_database("stream_outbox_bench_verify_history") as url:
                engine = create_engine(url)
                seed_database(engine, 3, messages=messages)
                detail = {"watermark": "2030-01-01T00:00:00+00:00", "files": []}
                audit.record(engine, actor="bench", action=EXPORT_ACTION, count=0, detail=detail)
                seed_stream(emu, engine, messages=True)
                print(f"seeded {messages:,} messages; verifying them", file=sys.stderr)
                results["verify_messages"] = run_verify(url, emu, "--messages")
                engine.dispose()
    results["query_members_hours"] = channels / QUERY_MEMBERS_PER_MIN / 60
    return results


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The report's table rows."""
    v = results["verify"]
    calls = ", ".join(f"{e} {v['calls'][e]:,}" for e in ENDPOINTS[:3])
    hours = results["query_members_hours"]
    found = [
        _row(
            f"admin verify, {results['channels']:,} channels, {results['users']:,} users",
            v,
            f"{calls} (QueryMembers per channel: {hours:.1f} h)",
        )
    ]
    if "verify_each_history" in results:
        e = results["verify_each_history"]
        title = f"admin verify --messages, the same {results['channels']:,} channels (empty)"
        found.append(_row(title, e, f"QueryChannels {e['calls']['QueryChannels']:,}"))
    if "verify_messages" in results:
        m = results["verify_messages"]
        title = f"admin verify --messages, a conversation of {results['messages']:,} messages"
        found.append(_row(title, m, f"GetOrCreateChannel {m['calls']['GetOrCreateChannel']:,}"))
    return found


def _row(title: str, run: dict[str, Any], calls: str) -> tuple[str, str, str, str]:
    """One run's row: Stream's limits on, its time, peak RSS, calls and 429s."""
    timing = f"{run['seconds']:.1f} s (CPU {run['cpu_seconds']:.1f} s)"
    note = f"{calls}, {run['status_429']} x 429"
    return f"{title}, Stream's limits", timing, f"peak RSS {run['peak_rss_mb']:.0f} MB", note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=150_000, help="0: no history run")
    args = parser.parse_args()
    results = measure(args.channels, args.messages)
    print(json.dumps(results, indent=2))
    for row in rows(results):
        print(" | ".join(row))


if __name__ == "__main__":
    main()
