"""Drain at Stream's ceiling: new conversations at real latencies, with and without limits.

A backlog of ``--conversations`` new conversations (2 or 3 members each, among a fifth
as many users: one outbox row per conversation) drains through the real ``stream-outbox
relay`` and one ``stream-outbox worker`` with default settings, into an emulator process
that adds ``latency`` to every call. The users are synced first (their rows drain, not
timed), as in a running app where a burst of conversations arrives among known users;
then the conversations' rows come due and the clock starts. With ``limits`` the
emulator applies Stream's published limits (GetOrCreateChannel 10,000 a minute, the
endpoint that binds this workload) and the worker paces itself from them, as it does
against Stream; without, neither does.

Each run prints conversations/s, Stream calls per conversation (and by endpoint), 429s,
GetOrCreateChannel's pace as a fraction of its limit, the worker's peak RSS and the most
database connections open at once.

    uv run python -m benchmarks.ceiling [--conversations 10000] [--latency-ms 0,50,150]

With ``--budget``, the budget's own cost: the emulator's limits off, each latency run
with the worker's default settings (its shared budget on) and then with
``OUTBOX_STREAM_LIMITS=false``, back to back, with the ratio of the two; each run also
prints the worker's CPU seconds per 1,000 conversations.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import backlog
from benchmarks.drain import _settle
from benchmarks.pipeline import Processes
from stream_outbox.worker.stream.limits import PUBLISHED_LIMITS
from tests.support.database import outbox_database
from tests.support.emulator import remote_emulator

BINDING = "GetOrCreateChannel"


def fill(
    url: str,
    conversations: int,
    seed: int = 17,
    *,
    users: int | None = None,
    user_rows: bool = True,
) -> dict[str, int]:
    """Users (none in Stream; ``users``: a fifth as many as conversations unless given) and
    new conversations, one outbox row each, due when :func:`_release`d. ``user_rows``: the
    users have rows of their own too (due at once)."""
    rng = random.Random(seed)
    count = conversations // 5 if users is None else users
    people = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(count)]
    with psycopg.connect(backlog._conninfo(url)) as conn, conn.cursor() as cur:
        with cur.copy("COPY users (id, email) FROM STDIN") as copy:
            for u in people:
                copy.write_row((u, f"{u.hex}@example.com"))
        ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(conversations)]
        with cur.copy("COPY conversations (id) FROM STDIN") as copy:
            for c in ids:
                copy.write_row((c,))
        with cur.copy("COPY conversation_participants (conversation_id, user_id) FROM STDIN") as cp:
            for c in ids:
                for m in rng.sample(people, rng.choice([2, 3])):
                    cp.write_row((c, m))
        if user_rows:
            with cur.copy("COPY stream_outbox (target_kind, target_id, event) FROM STDIN") as copy:
                for u in people:
                    copy.write_row(("user", str(u), "insert"))
        columns = "target_kind, target_id, event, available_at"
        with cur.copy(f"COPY stream_outbox ({columns}) FROM STDIN") as copy:
            for c in ids:  # due once the users are synced
                copy.write_row(("conversation", str(c), "insert", "infinity"))
        cur.execute("ANALYZE")
    return {"conversations": conversations, "users": len(people)}


class _Sampler(threading.Thread):
    """The most connections open to the run's database, sampled every 200 ms."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.most, self.stop = url, 0, threading.Event()

    def run(self) -> None:
        with psycopg.connect(backlog._conninfo(self.url), autocommit=True) as conn:
            while not self.stop.wait(0.2):
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                ).fetchone()
                self.most = max(self.most, int(row[0]) - 1 if row else 0)  # not this one


def _users_synced(url: str, timeout: float) -> None:
    """Wait until no user row is open."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(backlog._conninfo(url), autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM stream_outbox WHERE target_kind = 'user'"
                " AND status IN ('pending', 'dispatched')"
            ).fetchone()
            if row and int(row[0]) == 0:
                return
            time.sleep(0.1)
    raise RuntimeError(f"users not synced in {timeout} s")


def _release(url: str) -> float:
    """Make the conversations' rows due now; the database's time of it."""
    with psycopg.connect(backlog._conninfo(url), autocommit=True) as conn:
        row = conn.execute(
            "UPDATE stream_outbox SET available_at = now() WHERE target_kind = 'conversation'"
            " RETURNING extract(epoch FROM now())"
        ).fetchone()
        conn.execute("NOTIFY stream_outbox")
    return float(row[0]) if row else time.time()


def peak_rss_mb(pid: int) -> float:
    """A running process's peak RSS so far (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system) a running process and its descendants have used."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        used[child] = (int(fields[11]) + int(fields[12])) / tick
    family = {pid}
    while grown := {c for c, parent in parents.items() if parent in family} - family:
        family |= grown
    return sum(used.get(member, 0.0) for member in family)


def run(
    template: str,
    conversations: int,
    latency_ms: float,
    limits: bool,
    budget: bool | None = None,
) -> dict[str, Any]:
    """One drain of a copy of the backlog at ``latency_ms``, Stream's limits on or off in
    the emulator; the worker's budget (``OUTBOX_STREAM_LIMITS``) as ``budget``, else as
    ``limits``."""
    budget = limits if budget is None else budget
    with (
        remote_emulator(latency_ms=latency_ms, stream_limits=limits) as emu,
        backlog.clone(template) as url,
    ):
        sampler = _Sampler(url)
        try:
            with Processes(url, emu, "ceiling", OUTBOX_STREAM_LIMITS=str(budget).lower()) as procs:
                procs.worker(0)
                worker_pid = procs.procs[-1].pid
                procs.relay()
                _users_synced(url, timeout=600)
                emu.reset_request_counts()
                sampler.start()
                cpu_before = cpu_seconds(worker_pid)
                began = _release(url)
                settled = _settle(url, timeout=1800)
                cpu = cpu_seconds(worker_pid) - cpu_before
                rss = peak_rss_mb(worker_pid)
        finally:
            sampler.stop.set()
        counts = emu.request_counts()
    seconds = max(1e-9, settled["last"] - began)
    by_endpoint: dict[str, int] = counts["counts"]
    binding_calls = int(by_endpoint.get(BINDING, 0))
    per_minute = binding_calls / seconds * 60
    return {
        "latency_ms": latency_ms,
        "limits": limits,
        "budget": budget,
        "worker_cpu_s_per_1000": cpu / conversations * 1000,
        "conversations": conversations,
        "by_status": settled["by_status"],
        "seconds": seconds,
        "conversations_per_s": conversations / seconds,
        "calls": int(counts["total"]),
        "calls_per_conversation": int(counts["total"]) / conversations,
        "calls_by_endpoint": by_endpoint,
        "429s": int(counts["by_status"].get("429", 0)),
        "binding_per_minute": per_minute,
        "binding_fraction": per_minute / PUBLISHED_LIMITS[BINDING],
        "worker_peak_rss_mb": rss,
        "db_connections_max": sampler.most,
    }


def measure(conversations: int, latencies: list[float]) -> dict[str, Any]:
    """Every latency, without and with Stream's limits, on one backlog, in one run."""
    results: dict[str, Any] = {"runs": []}
    with outbox_database("stream_outbox_ceiling") as template:
        results["backlog"] = fill(template, conversations)
        for latency in latencies:
            for limits in (False, True):
                results["runs"].append(run(template, conversations, latency, limits))
                print_run(results["runs"][-1])
    return results


def measure_budget(conversations: int, latencies: list[float]) -> dict[str, Any]:
    """The budget's cost: each latency with the emulator's limits off, the worker's
    budget on (the default) and off, back to back on one backlog."""
    results: dict[str, Any] = {"runs": []}
    with outbox_database("stream_outbox_ceiling") as template:
        results["backlog"] = fill(template, conversations)
        for latency in latencies:
            pair = [run(template, conversations, latency, False, on) for on in (True, False)]
            results["runs"] += pair
            for r in pair:
                print_run(r)
            ratio = pair[0]["conversations_per_s"] / pair[1]["conversations_per_s"]
            print(f"{latency:>5.0f} ms  default settings / budget off: {ratio:.1%}", flush=True)
    return results


def print_run(r: dict[str, Any]) -> None:
    """One line for a run."""
    print(
        f"{r['latency_ms']:>5.0f} ms  limits {'on ' if r['limits'] else 'off'}  "
        f"budget {'on ' if r.get('budget', r['limits']) else 'off'}  "
        f"CPU {r.get('worker_cpu_s_per_1000', 0):.2f} s/1000  "
        f"{r['conversations_per_s']:7.1f} conv/s  {r['calls_per_conversation']:.2f} calls/conv  "
        f"429s {r['429s']:>4}  {BINDING} {r['binding_per_minute']:7.0f}/min "
        f"({r['binding_fraction']:.1%} of {PUBLISHED_LIMITS[BINDING]:,})  "
        f"RSS {r['worker_peak_rss_mb']:.0f} MB  db conns {r['db_connections_max']}  "
        f"{r['by_status']}",
        flush=True,
    )


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The benchmark table's lines: one per latency and limits."""
    out = []
    for r in results["runs"]:
        limits = "Stream's limits" if r["limits"] else "no limits"
        out.append(
            (
                f"drain {r['conversations']:,} conversations, {r['latency_ms']:.0f} ms, {limits}",
                f"**{r['conversations_per_s']:.0f} conv/s**, {r['calls_per_conversation']:.2f} "
                "calls/conv",
                f"{BINDING} {r['binding_fraction']:.1%} of {PUBLISHED_LIMITS[BINDING]:,}/min, "
                f"{r['429s']} x 429",
                f"worker RSS {r['worker_peak_rss_mb']:.0f} MB, "
                f"{r['db_connections_max']} db connections",
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--latency-ms", default="0,50,150")
    parser.add_argument(
        "--budget",
        action="store_true",
        help="the budget's cost: emulator limits off, the worker's budget on, then off",
    )
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    latencies = [float(x) for x in args.latency_ms.split(",")]
    results = (measure_budget if args.budget else measure)(args.conversations, latencies)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
