"""On-demand migration during a backfill: from the migrate request to the channel in Stream.

A backlog of ``--rows`` outbox rows (the drain benchmark's mix) drains through the real
``stream-outbox relay`` and ``stream-outbox worker`` processes into the emulator, and
behind it sit the backfill rows of ``--requests`` legacy conversations (two members and
``--messages`` messages each), last in the queue. While the backlog drains, a participant
asks for each of them through the router (``POST /chat/conversations/{id}/migrate``,
served by uvicorn), spread over ``--spread`` seconds, after one first request that is
not counted (it warms the workers' connections, as in a deployment that has been
running). Each wait runs from the request to the channel being ready in Stream (its
members and its whole history answered by QueryChannels), and to the route answering
200. ``--priority-worker`` runs ``stream-outbox worker --queue backlog`` and ``--queue
priority`` as two processes instead of one ``stream-outbox worker``.

    uv run python -m benchmarks.on_demand [--rows 100000] [--requests 50] [--spread 15]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import requests
from fastapi import FastAPI, Header
from sqlalchemy import Connection, create_engine
from stream_chat import StreamChat

from benchmarks import backlog
from benchmarks.figures import median, percentile
from benchmarks.pipeline import Processes
from stream_outbox.app_hooks.chat_router import chat_router
from tests.support.database import outbox_database
from tests.support.emulator import RemoteEmulator, remote_emulator
from tests.support.processes import free_port, script

WORKER_THREADS = "8"
# How often a request polls the route (a database read) and Stream (QueryChannels, which
# the emulator answers by scanning every channel: polled less, it slows the drain less)
_POLL_ROUTE = 0.02
_POLL_STREAM = 0.05


def add_targets(url: str, count: int, messages: int) -> list[dict[str, Any]]:
    """Legacy conversations with their backfill rows at the end of the backlog."""
    start = datetime(2023, 1, 1, tzinfo=UTC)
    made = []
    with psycopg.connect(backlog._conninfo(url)) as conn, conn.cursor() as cur:
        for _ in range(count):
            users = [uuid.uuid4() for _ in range(2)]
            cid = uuid.uuid4()
            for user in users:
                cur.execute("INSERT INTO users (id, email) VALUES (%s, %s)", (user, f"{user}@x.io"))
            cur.execute("INSERT INTO conversations (id) VALUES (%s)", (cid,))
            for user in users:
                cur.execute(
                    "INSERT INTO conversation_participants (conversation_id, user_id) "
                    "VALUES (%s, %s)",
                    (cid, user),
                )
            for k in range(messages):
                cur.execute(
                    "INSERT INTO messages (id, conversation_id, sender_id, content, created_at) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (uuid.uuid4(), cid, users[k % 2], f"m{k}", start + timedelta(minutes=k)),
                )
            made.append({"id": str(cid), "member": str(users[0])})
        cur.executemany(
            "INSERT INTO stream_outbox (target_kind, target_id, event, payload) "
            "VALUES ('conversation', %s, 'backfill', '{\"legacy\": true, \"history\": true}')",
            [(target["id"],) for target in made],
        )
    return made


def create_app() -> FastAPI:
    """The app's side: the chat router on DATABASE_URL (``uvicorn --factory``, in a process
    of its own so that the benchmark's polling does not slow it)."""
    engine = create_engine(os.environ["DATABASE_URL"], pool_size=20)

    def connection() -> Iterator[Connection]:
        with engine.connect() as conn:
            yield conn

    def current_user_id(x_user_id: str = Header()) -> str:
        return x_user_id

    app = FastAPI()
    app.include_router(
        chat_router(
            connection=connection,
            current_user_id=current_user_id,
            api_key=os.environ["GETSTREAM_API_KEY"],
            api_secret=os.environ["GETSTREAM_API_SECRET"],
        )
    )
    return app


def serve(procs: Processes) -> str:
    """Start the app under uvicorn on a free local port; returns its base URL."""
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.on_demand:create_app"]
    procs.start("app", [*args, "--port", str(port)], "Application startup complete")
    return f"http://127.0.0.1:{port}"


def _open_rows(url: str) -> int:
    with psycopg.connect(backlog._conninfo(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM stream_outbox WHERE status IN ('pending', 'dispatched')"
        ).fetchone()
    return int(row[0]) if row else 0


def _ready(client: StreamChat, cid: str, messages: int) -> bool:
    found = client.query_channels({"cid": cid}, message_limit=messages + 1)["channels"]
    return bool(found) and len(found[0]["members"]) == 2 and len(found[0]["messages"]) == messages


def ask(base: str, emu: RemoteEmulator, db_url: str, target: dict[str, Any], messages: int) -> Any:
    """One participant's request, timed until the channel is ready and the route says 200."""
    client = StreamChat(emu.api_key, emu.api_secret, base_url=emu.base_url)
    http = requests.Session()
    http.trust_env = False
    url = f"{base}/chat/conversations/{target['id']}/migrate"
    headers = {"x-user-id": target["member"]}
    backlog_open = _open_rows(db_url)
    started = time.perf_counter()
    answer = http.post(url, headers=headers)
    answered = time.perf_counter() - started
    cid = answer.json()["cid"]
    ready = synced = None
    asked_stream = 0.0
    while ready is None or synced is None:
        now = time.perf_counter()
        if ready is None and now - asked_stream >= _POLL_STREAM:
            asked_stream = now
            if _ready(client, cid, messages):
                ready = time.perf_counter() - started
        if synced is None and http.get(url, headers=headers).status_code == 200:
            synced = time.perf_counter() - started
        time.sleep(_POLL_ROUTE)
    return {
        "status": answer.status_code,
        "answered_s": answered,
        "ready_s": ready,
        "synced_s": synced,
        "backlog_open_at_request": backlog_open,
        "backlog_open_at_ready": _open_rows(db_url),
    }


def run(
    rows: int,
    count: int,
    messages: int,
    spread: float,
    priority_worker: bool = False,
    latency_ms: float = 0.0,
) -> dict[str, Any]:
    """The whole run: backlog, processes, requests spread over the drain (with
    ``priority_worker``, a second worker process serving the priority queue only)."""
    with (
        outbox_database("stream_outbox_ondemand") as url,
        remote_emulator(latency_ms=latency_ms) as emu,
    ):
        figures: dict[str, Any] = {"backlog": backlog.fill(url, rows)}
        warm, *targets = add_targets(url, count + 1, messages)
        samples: list[dict[str, Any]] = []
        with Processes(url, emu, "ondemand", OUTBOX_WORKER_THREADS=WORKER_THREADS) as procs:
            base = serve(procs)
            if priority_worker:  # the backlog's worker, and one for the priority queue
                command = script("stream-outbox", "worker", "--queue")
                procs.start("worker0", [*command, "backlog"], "worker started")
                procs.start("worker-priority", [*command, "priority"], "worker started")
            else:
                procs.worker(0)
            began = time.monotonic()
            procs.relay()
            # One request first, not counted: the workers' first job pays for their
            # first connections and statements, which a running deployment paid long ago
            figures["first_request"] = ask(base, emu, url, warm, messages)
            asking = time.monotonic()
            threads = []
            for n, target in enumerate(targets):
                delay = asking + n * spread / count - time.monotonic()
                time.sleep(max(0.0, delay))
                thread = threading.Thread(
                    target=lambda t=target: samples.append(ask(base, emu, url, t, messages))
                )
                thread.start()
                threads.append(thread)
            for thread in threads:
                thread.join(120)
            while _open_rows(url):
                time.sleep(0.2)
            figures["drain_s"] = time.monotonic() - began
    figures["priority_worker"] = priority_worker
    figures["latency_ms"] = latency_ms
    figures["priority_threads"] = os.environ.get("OUTBOX_PRIORITY_THREADS", "2")
    return {**figures, **summary(samples), "messages_each": messages, "samples": samples}


def summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """p50, p99 and max of each wait; how many requests the backlog was still draining for."""
    out: dict[str, Any] = {"requests": len(samples)}
    for key in ("answered_s", "ready_s", "synced_s"):
        values = [s[key] for s in samples]
        out[key] = {
            "p50": median(values),
            "p99": percentile(values, 99),
            "max": max(values),
        }
    out["during_drain"] = sum(1 for s in samples if s["backlog_open_at_ready"] > 0)
    out["status_codes"] = sorted({s["status"] for s in samples})
    return out


def print_figures(results: dict[str, Any]) -> None:
    """The waits, in milliseconds."""
    print(
        f"on-demand migration: backlog {results['backlog']['rows']} rows, drained in "
        f"{results['drain_s']:.1f} s; {results['requests']} requests, "
        f"{results['during_drain']} answered while the backlog drained; the first request "
        f"(not counted): ready in {results['first_request']['ready_s'] * 1000:.0f} ms"
    )
    for key, label in (
        ("answered_s", "POST answered (202)"),
        ("ready_s", "channel ready in Stream"),
        ("synced_s", "route answers 200"),
    ):
        f = results[key]
        print(
            f"  {label:<26} p50 {f['p50'] * 1000:7.0f} ms   p99 {f['p99'] * 1000:7.0f} ms"
            f"   max {f['max'] * 1000:7.0f} ms"
        )


# The runs the docs quote: (label, backlog rows, latency ms, priority process, priority threads)
RUNS: tuple[tuple[str, int, float, bool, str], ...] = (
    ("default worker", 100_000, 0.0, False, "2"),
    ("threads shared", 100_000, 0.0, False, "0"),
    ("priority process", 100_000, 0.0, True, "2"),
    ("default worker, 50 ms", 20_000, 50.0, False, "2"),
    ("threads shared, 50 ms", 20_000, 50.0, False, "0"),
)


def measure(scale: float = 1.0, requests_: int = 50, spread: float = 15.0) -> list[dict[str, Any]]:
    """Each run of ``RUNS`` (backlogs times ``scale``), without the per-request samples."""
    out: list[dict[str, Any]] = []
    for label, rows, latency_ms, priority_worker, threads in RUNS:
        saved = os.environ.get("OUTBOX_PRIORITY_THREADS")
        os.environ["OUTBOX_PRIORITY_THREADS"] = threads
        try:
            result = run(int(rows * scale), requests_, 5, spread, priority_worker, latency_ms)
        finally:
            if saved is None:
                os.environ.pop("OUTBOX_PRIORITY_THREADS", None)
            else:
                os.environ["OUTBOX_PRIORITY_THREADS"] = saved
        result.pop("samples", None)
        out.append({"run": label, **result})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--messages", type=int, default=5, help="history of each conversation")
    parser.add_argument("--spread", type=float, default=15.0, help="seconds over which to ask")
    parser.add_argument(
        "--priority-worker", action="store_true", help="a worker process for the priority queue"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to each Stream call")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    results = run(
        args.rows,
        args.requests,
        args.messages,
        args.spread,
        args.priority_worker,
        args.latency_ms,
    )
    print_figures(results)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
