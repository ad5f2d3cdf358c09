"""Load check for the Stream emulator through the real ``stream-chat`` SDK.

Starts an emulator in its own process, then drives it from ``--processes``
client processes with ``--threads`` threads each; every thread has its own
``StreamChat`` (a keep-alive ``requests.Session``). Each scenario runs for a
bounded ``--seconds``:

* ``app``     - ``client.get_app_settings()``, the smallest call (pure overhead)
* ``upsert``  - ``client.upsert_users()`` with batches of ``--batch`` new users
* ``members`` - ``channel.add_members()`` with ``--members-batch`` existing users

Prints calls/s, users/s and latency percentiles, cross-checks the call count with
the emulator's request log (``GET /_emulator/requests``) and, on Linux, reports
the server's CPU use, from which its calls/s per core follow.

    uv run python benchmarks/emulator_load.py --seconds 5 --threads 4 --processes 1
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from stream_chat import StreamChat

from stream_outbox.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator

Step = Callable[[StreamChat, int, int], int]
SCENARIOS = ("app", "upsert", "members")


@dataclass(frozen=True)
class Settings:
    """What every client process needs to know."""

    base_url: str
    threads: int
    seconds: float
    batch: int
    members_batch: int
    pool: int
    trust_env: bool


def _serve(port_queue: Any, stop_event: Any) -> None:
    # The load test measures the server, not Stream's table: no rate limits.
    with Emulator(stream_limits=False) as emulator:
        port_queue.put(emulator.port)
        stop_event.wait(900)


def _step(name: str, settings: Settings) -> Step:
    def app(client: StreamChat, thread_no: int, call_no: int) -> int:
        client.get_app_settings()
        return 0

    def upsert(client: StreamChat, thread_no: int, call_no: int) -> int:
        batch = settings.batch
        client.upsert_users([{"id": f"t{thread_no}-c{call_no}-u{i}"} for i in range(batch)])
        return batch

    def members(client: StreamChat, thread_no: int, call_no: int) -> int:
        batch, pool = settings.members_batch, settings.pool
        start = (call_no * batch) % pool
        ids = [f"pool-{(start + i) % pool}" for i in range(batch)]
        client.channel("messaging", f"load-{thread_no}").add_members(ids)
        return batch

    return {"app": app, "upsert": upsert, "members": members}[name]


def _client_process(
    settings: Settings, name: str, proc_no: int, ready: Any, go: Any, results: Any
) -> None:
    step = _step(name, settings)
    totals: list[tuple[int, int, list[float]]] = []
    clients = [
        StreamChat(DEFAULT_API_KEY, DEFAULT_API_SECRET, base_url=settings.base_url)
        for _ in range(settings.threads)
    ]

    def work(n: int, deadline: float) -> None:
        client, thread_no = clients[n], proc_no * settings.threads + n
        client.session.trust_env = settings.trust_env
        calls = items = 0
        latencies: list[float] = []
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            items += step(client, thread_no, calls)
            latencies.append(time.perf_counter() - started)
            calls += 1
        totals.append((calls, items, latencies))

    ready.put(proc_no)
    go.wait(60)
    deadline = time.perf_counter() + settings.seconds
    workers = [threading.Thread(target=work, args=(n, deadline)) for n in range(settings.threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for client in clients:
        client.session.close()
    results.put(totals)


def _prepare_members(settings: Settings, channels: int) -> None:
    client = StreamChat(DEFAULT_API_KEY, DEFAULT_API_SECRET, base_url=settings.base_url)
    try:
        for start in range(0, settings.pool, 100):
            end = min(start + 100, settings.pool)
            client.upsert_users([{"id": f"pool-{i}"} for i in range(start, end)])
        client.upsert_user({"id": "owner"})
        for thread_no in range(channels):
            client.channel("messaging", f"load-{thread_no}").create("owner")
    finally:
        client.session.close()


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of process ``pid`` (Linux ``/proc``), or ``None``."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run(settings: Settings, name: str, processes: int, server_pid: int | None) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    clients = [
        context.Process(target=_client_process, args=(settings, name, p, ready, go, results))
        for p in range(processes)
    ]
    for process in clients:
        process.start()
    for _ in clients:
        ready.get(timeout=60)
    requests.post(f"{settings.base_url}/_emulator/requests/reset", timeout=5)
    cpu_before = _cpu_seconds(server_pid)
    go.set()
    totals = [t for _ in clients for t in results.get(timeout=settings.seconds + 60)]
    cpu_after = _cpu_seconds(server_pid)
    for process in clients:
        process.join(30)
    return _figures(settings, name, totals, cpu_before, cpu_after)


def _figures(
    settings: Settings,
    name: str,
    totals: list[tuple[int, int, list[float]]],
    cpu_before: float | None,
    cpu_after: float | None,
) -> dict[str, Any]:
    calls = sum(t[0] for t in totals)
    items = sum(t[1] for t in totals)
    lat = sorted(x for t in totals for x in t[2]) or [0.0]
    served = requests.get(f"{settings.base_url}/_emulator/requests", timeout=5).json()["total"]
    elapsed = settings.seconds
    busy = (cpu_after - cpu_before) if cpu_before is not None and cpu_after is not None else 0.0
    return {
        "scenario": name,
        "calls": calls,
        "calls_per_s": calls / elapsed,
        "users_per_s": items / elapsed,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "served": served,
        "server_cpu": busy / elapsed,
        "calls_per_cpu_s": calls / busy if busy > 0 else None,
    }


def line(f: dict[str, Any]) -> str:
    """One scenario's figures on one line."""
    text = (
        f"{f['scenario']:8s} {f['calls']:7d} calls {f['calls_per_s']:7.0f} calls/s "
        f"{f['users_per_s']:8.0f} users/s  p50 {f['p50_ms']:5.2f} ms  p99 {f['p99_ms']:6.2f} ms"
        f"  (server counted {f['served']})"
    )
    if f["calls_per_cpu_s"]:
        text += (
            f"  server CPU {f['server_cpu']:4.0%} -> ~{f['calls_per_cpu_s']:5.0f} calls/s per core"
        )
    return text


def measure(
    seconds: float, clients: list[tuple[int, int]], scenarios: tuple[str, ...] = SCENARIOS
) -> list[dict[str, Any]]:
    """Each scenario for each ``(processes, threads)`` of ``clients``, against one emulator."""
    out: list[dict[str, Any]] = []
    for processes, threads in clients:
        args = ["--seconds", str(seconds), "--threads", str(threads)]
        args += ["--processes", str(processes), "--scenarios", ",".join(scenarios)]
        for figures in _main(args):
            out.append({**figures, "processes": processes, "threads": threads})
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the scenarios and print one line per scenario."""
    _main(argv)


def _main(argv: list[str] | None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each scenario")
    parser.add_argument("--threads", type=int, default=4, help="client threads per process")
    parser.add_argument("--processes", type=int, default=1, help="client processes")
    parser.add_argument("--batch", type=int, default=100, help="users per upsert call")
    parser.add_argument("--members-batch", type=int, default=10, help="users per add_members")
    parser.add_argument("--pool", type=int, default=1000, help="existing users to add as members")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument(
        "--no-trust-env",
        action="store_true",
        help="set requests' Session.trust_env=False (skips per-call proxy lookups in the client)",
    )
    args = parser.parse_args(argv)

    context = multiprocessing.get_context("spawn")
    port_queue, stop_event = context.Queue(), context.Event()
    server = context.Process(target=_serve, args=(port_queue, stop_event), daemon=True)
    server.start()
    try:
        settings = Settings(
            base_url=f"http://127.0.0.1:{port_queue.get(timeout=30)}",
            threads=args.threads,
            seconds=args.seconds,
            batch=args.batch,
            members_batch=args.members_batch,
            pool=args.pool,
            trust_env=not args.no_trust_env,
        )
        print(
            f"emulator at {settings.base_url}; {args.processes} client process(es) x "
            f"{args.threads} threads, {args.seconds:.0f}s per scenario, {os.cpu_count()} CPUs"
        )
        _prepare_members(settings, args.processes * args.threads)
        figures = []
        for name in args.scenarios.split(","):
            figures.append(_run(settings, name.strip(), args.processes, server.pid))
            print(line(figures[-1]), flush=True)
        return figures
    finally:
        stop_event.set()
        server.join(15)
        if server.is_alive():
            server.terminate()
            server.join()


if __name__ == "__main__":
    main()
