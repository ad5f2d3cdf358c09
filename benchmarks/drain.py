"""Drain throughput: a backlog through the real relay and workers, a naive baseline, the floor.

* ``pipeline`` - ``stream-outbox relay`` and N ``stream-outbox worker`` processes;
* ``naive`` - one job per row and the plain SDK calls for it (no coalescing, batching
  or caches), on the first rows of the same backlog, same Redis, same emulator;
* ``floor`` - the bare path: the real relay claims and enqueues, a worker dequeues
  and marks the rows done; no database reads, no Stream call.

Each run gets a fresh copy of one backlog, a reset emulator and its own Redis
prefix. Time runs from the relay's start (its log line) to the last row settled
(the newest ``updated_at``).

    uv run python -m benchmarks.drain [--rows 100000] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import backlog
from benchmarks.pipeline import Processes
from tests.support.database import outbox_database
from tests.support.emulator import RemoteEmulator, remote_emulator

WORKER_THREADS = "8"
PROCS = [sys.executable, "-m", "benchmarks.procs"]


def _started_at(log: Path, text: str) -> float:
    """The wall-clock time of the first log line containing ``text`` (logging's asctime)."""
    for line in log.read_text(errors="replace").splitlines():
        if text in line:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            return stamp.timestamp()
    raise RuntimeError(f"{text!r} not in {log}")


def _open_rows(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM stream_outbox WHERE status IN ('pending', 'dispatched')"
    ).fetchone()
    return int(row[0]) if row else 0


def _settle(url: str, timeout: float) -> dict[str, Any]:
    """Wait until no row is open; the rows by status and the time of the last one settled."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(backlog._conninfo(url), autocommit=True) as conn:
        while _open_rows(conn) and time.monotonic() < deadline:
            time.sleep(0.1)
        by_status: dict[str, int] = dict(
            conn.execute("SELECT status, count(*) FROM stream_outbox GROUP BY status").fetchall()
        )
        last = conn.execute("SELECT extract(epoch FROM max(updated_at)) FROM stream_outbox")
        row = last.fetchone()
    return {"by_status": by_status, "last": float(row[0]) if row and row[0] else time.time()}


def _start(procs: Processes, mode: str, workers: int) -> Path:
    """Start the workers, then the relay; returns the relay's log."""
    for n in range(workers):
        if mode == "pipeline":
            procs.worker(n)
        else:
            procs.start(f"worker{n}", [*PROCS, f"{mode}-worker"], "worker started")
    if mode == "naive":
        return procs.start("relay", [*PROCS, "naive-relay"], "relay started")
    return procs.relay()


def run(
    template_url: str, emu: RemoteEmulator, mode: str, workers: int, rows: int | None = None
) -> dict[str, Any]:
    """Drain a copy of the backlog (``rows``: only its first rows) in ``mode``."""
    emu.reset()
    with (
        backlog.clone(template_url, rows) as url,
        Processes(url, emu, f"drain_{mode}", OUTBOX_WORKER_THREADS=WORKER_THREADS) as procs,
    ):
        relay_log = _start(procs, mode, workers)
        settled = _settle(url, timeout=900)
        started = _started_at(relay_log, "relay started")
        reconciles = procs.logs("worker").count(" reconcile ")
    counts = emu.request_counts()
    done = int(settled["by_status"].get("done", 0))
    total = sum(int(n) for n in settled["by_status"].values())
    seconds = max(1e-9, settled["last"] - started)
    calls = int(counts["total"])
    return {
        "mode": mode,
        "workers": workers,
        "rows": total,
        "done": done,
        "by_status": settled["by_status"],
        "seconds": seconds,
        "rows_per_s": total / seconds,
        "reconciles": reconciles,
        "reconciles_per_s": reconciles / seconds,
        "stream_calls": calls,
        "calls_per_row": calls / max(1, total),
        "calls_by_status": counts["by_status"],
    }


def measure(rows: int, workers: list[int], naive_rows: int) -> dict[str, Any]:
    """The whole comparison on one backlog, one emulator (0 ms), in one run."""
    results: dict[str, Any] = {"runs": []}
    with outbox_database("stream_outbox_backlog") as template, remote_emulator() as emu:
        results["backlog"] = backlog.fill(template, rows)
        for n in workers:
            results["runs"].append(run(template, emu, "pipeline", n))
        for n in workers:
            results["runs"].append(run(template, emu, "floor", n))
        results["runs"].append(run(template, emu, "naive", workers[0], naive_rows))
    return results


def print_figures(results: dict[str, Any]) -> None:
    """One line per run."""
    print(f"drain: backlog {results['backlog']}")
    print(
        f"{'mode':<10}{'workers':>8}{'rows':>9}{'s':>8}{'rows/s':>9}{'recon/s':>9}"
        f"{'calls/row':>10}  status"
    )
    for r in results["runs"]:
        print(
            f"{r['mode']:<10}{r['workers']:>8}{r['rows']:>9}{r['seconds']:>8.1f}"
            f"{r['rows_per_s']:>9.0f}{r['reconciles_per_s']:>9.0f}{r['calls_per_row']:>10.3f}"
            f"  {r['by_status']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--naive-rows", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2", help="worker processes, comma-separated")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    workers = [int(n) for n in args.workers.split(",")]
    results = measure(args.rows, workers, args.naive_rows)
    print_figures(results)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
