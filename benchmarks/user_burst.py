"""A burst of new conversations among new users, Stream's limits on: UpdateUsers calls.

``--conversations`` new conversations (2 or 3 members each) among ``--users`` users
Stream does not hold yet, no user rows: the conversation jobs upsert the members. The
rows come due at once and drain through the real ``stream-outbox relay`` and
``--workers`` ``stream-outbox worker`` processes (8 threads each, default settings, the
budget on) into an emulator process with Stream's published limits and ``latency``
per call. UpdateUsers (300 a minute) binds this burst when concurrent jobs upsert the
same new users again and again; ideally it takes about users / 100 calls.

Prints UpdateUsers calls, all Stream calls, conversations/s, 429s and the rows by status.

    uv run python -m benchmarks.user_burst [--conversations 1000] [--users 600]
        [--workers 2] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks import backlog
from benchmarks.ceiling import _release, fill
from benchmarks.drain import _settle
from benchmarks.pipeline import Processes
from tests.support.database import outbox_database
from tests.support.emulator import remote_emulator

__all__ = ["measure"]


def measure(conversations: int, users: int, workers: int, latency_ms: float) -> dict[str, Any]:
    """One drain of the burst; its figures."""
    with outbox_database("stream_outbox_user_burst") as template:
        fill(template, conversations, users=users, user_rows=False)
        with (
            remote_emulator(latency_ms=latency_ms, stream_limits=True) as emu,
            backlog.clone(template) as url,
            Processes(url, emu, "user_burst", OUTBOX_STREAM_LIMITS="true") as procs,
        ):
            for n in range(workers):
                procs.worker(n)
            procs.relay()
            emu.reset_request_counts()
            began = _release(url)
            settled = _settle(url, timeout=1800)
            counts = emu.request_counts()
    seconds = max(1e-9, settled["last"] - began)
    by_endpoint: dict[str, int] = counts["counts"]
    return {
        "conversations": conversations,
        "users": users,
        "workers": workers,
        "latency_ms": latency_ms,
        "seconds": seconds,
        "conversations_per_s": conversations / seconds,
        "update_users": int(by_endpoint.get("UpdateUsers", 0)),
        "calls": int(counts["total"]),
        "calls_by_endpoint": by_endpoint,
        "429s": int(counts["by_status"].get("429", 0)),
        "by_status": settled["by_status"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    r = measure(args.conversations, args.users, args.workers, args.latency_ms)
    print(
        f"{r['conversations']} conversations among {r['users']} new users, "
        f"{r['workers']} workers, {r['latency_ms']:.0f} ms, Stream's limits on: "
        f"UpdateUsers {r['update_users']}, calls {r['calls']}, "
        f"{r['conversations_per_s']:.1f} conv/s, 429s {r['429s']}, {r['by_status']}",
        flush=True,
    )
    print(f"  by endpoint: {r['calls_by_endpoint']}", flush=True)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
