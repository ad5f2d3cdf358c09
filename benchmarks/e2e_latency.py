"""End-to-end latency: an app COMMIT to its Stream call landing in the emulator.

The real ``stream-outbox relay`` and ``stream-outbox worker`` run as subprocesses;
the app commits invitations (a new user, a conversation, two members, the
invitation) at a steady rate, recording the wall-clock time after each COMMIT. A
commit has landed when its channel is created (``GetOrCreateChannel``, the last
call of its sync); the emulator's request log gives the calls' ``received`` times,
matched to commits in order (the k-th commit with the k-th channel creation).
With LISTEN/NOTIFY the relay wakes at each COMMIT; polling only, it looks every
``OUTBOX_RELAY_POLL_INTERVAL`` (1 s).

    uv run python -m benchmarks.e2e_latency [--rate 20] [--seconds 20] [--latency-ms 0]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.figures import median, percentile
from benchmarks.pipeline import Processes
from benchmarks.write_path import invite
from stream_outbox.app_hooks import install
from tests.support.database import outbox_database
from tests.support.emulator import RemoteEmulator, remote_emulator
from tests.support.story import organizer_and_event

CREATE = "GetOrCreateChannel"


def _wait_for_calls(emu: RemoteEmulator, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if emu.request_counts()["counts"].get(CREATE, 0) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"only {emu.request_counts()['counts']} after {timeout} s")


def _commit_steadily(factory: sessionmaker[Session], rate: float, seconds: float) -> list[float]:
    organizer_id, event_id = organizer_and_event(factory, "Latency")
    commits: list[float] = []
    start = time.monotonic()
    for n in range(int(rate * seconds)):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with factory() as session:
            invite(session, organizer_id, event_id)
        commits.append(time.time())
    return commits


def run(
    url: str, emu: RemoteEmulator, *, listen: bool, rate: float, seconds: float, **env: str
) -> dict[str, Any]:
    """One mode: start the processes, warm up, commit steadily, match commits to calls."""
    engine = create_engine(url)
    factory = sessionmaker(engine)
    install(factory)
    try:
        with Processes(url, emu, "e2e", **env) as procs:
            procs.worker()
            procs.relay(listen=listen)
            _commit_steadily(factory, rate, 2.0)  # warm-up: connections, SDK clients
            _wait_for_calls(emu, int(rate * 2), 30)
            emu.reset_request_counts()
            commits = _commit_steadily(factory, rate, seconds)
            _wait_for_calls(emu, len(commits), 60)
            received = sorted(call["received"] for call in emu.request_log(CREATE))
    finally:
        engine.dispose()
    latencies = [(r - c) * 1000 for c, r in zip(commits, received, strict=False)]
    return {
        "listen": listen,
        "rate_per_s": rate,
        "commits": len(commits),
        "landed": len(received),
        "p50_ms": median(latencies),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "env": env,
    }


def measure(
    latency_ms: float, rate: float, seconds: float, modes: list[tuple[bool, dict[str, str]]]
) -> list[dict[str, Any]]:
    """Each (listen, extra environment) mode on a scratch database and one emulator."""
    results = []
    with (
        outbox_database("stream_outbox_bench") as url,
        remote_emulator(latency_ms=latency_ms) as emu,
    ):
        for listen, env in modes:
            emu.reset()
            result = run(url, emu, listen=listen, rate=rate, seconds=seconds, **env)
            result["latency_ms"] = latency_ms
            results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--worker-timeout-ms", default="", help="OUTBOX_WORKER_TIMEOUT_MS")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    env = {"OUTBOX_WORKER_TIMEOUT_MS": args.worker_timeout_ms} if args.worker_timeout_ms else {}
    results = measure(args.latency_ms, args.rate, args.seconds, [(True, env), (False, env)])
    for r in results:
        print(
            f"listen={r['listen']!s:<6} p50 {r['p50_ms']:.1f} ms  p95 {r['p95_ms']:.1f} ms  "
            f"p99 {r['p99_ms']:.1f} ms  ({r['commits']} commits, {r['landed']} landed) {r['env']}"
        )
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
