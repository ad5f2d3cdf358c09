"""Webhooks one ``stream-outbox inbound`` process takes: signed POSTs from client threads.

    uv run python -m benchmarks.inbound [--webhooks 5000] [--threads 16] [--channels 50]

Starts ``stream-outbox inbound`` on a scratch database (the reference app), posts
``message.new`` events shaped and signed as Stream sends them (each its own
``X-Webhook-Id``) from ``--threads`` threads with keep-alive connections, and prints the
webhooks acknowledged per second, then the rows applied per second by the process's
runner (the real applier: each event a message inserted in a conversation whose channel
the channel map knows),
timed from the first POST to the last row settled, and the same per CPU-second of the
process (its rate on one free core, whatever else the machine runs); receiving and
applying share the process's interpreter, so the rows left when the last post is
answered are also timed alone (applied after receiving, per second). Goal: 500
webhooks/s or more. Then 200 webhooks paced at 20 a second, and the lag from each
event's date (its ``created_at``, set as it is posted) to its row settled (``settled_at``:
when its batch's applying ended, in the transaction that writes the app's row, just
before the commit): p50, p99.

Stream posts from many connections at once: concurrent posts are stored in one INSERT
and one commit (the receiver's group commit), so the rate grows with the clients in
flight; each answer still waits for its row's commit.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from stream_outbox.app_hooks.outbox import channel_map, inbox
from stream_outbox.app_hooks.reference import Conversation, ConversationParticipant, User
from stream_outbox.worker.inbound import WEBHOOK_PATH
from tests.support.database import outbox_database
from tests.support.inbound import message_event, sign
from tests.support.processes import free_port, script, serving, start, stop, wait_for
from tests.support.settings import API_KEY, BIN, REDIS_URL, clean_environ, product_env

PACED_RATE = 20.0  # webhooks a second, one at a time, for the lag
PACED_COUNT = 200


def _bodies(count: int, channels: int, user_id: str) -> list[tuple[str, bytes]]:
    """Pre-built (webhook id, body) pairs, so the clients spend their time posting."""
    return [
        (
            str(uuid.uuid4()),
            json.dumps(
                message_event(f"messaging:bench{n % channels}", text=f"m{n}", user_id=user_id)
            ).encode(),
        )
        for n in range(count)
    ]


def _post_all(port: int, work: list[tuple[str, bytes]], failures: list[int]) -> None:
    """POST each body on one keep-alive connection (http.client: the lightest client, so
    the server, not the client, is what is measured)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for webhook_id, body in work:
            headers = {
                "Content-Type": "application/json",
                "X-Webhook-Id": webhook_id,
                "X-Webhook-Attempt": "1",
                "X-Api-Key": API_KEY,
                "X-Signature": sign(body),
            }
            connection.request("POST", WEBHOOK_PATH, body, headers)
            answer = connection.getresponse()
            answer.read()
            if answer.status != 200:
                failures.append(1)
    finally:
        connection.close()


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _paced_lags(port: int, url: str, rate: float, count: int, user_id: str) -> list[float]:
    """Post ``count`` events at ``rate`` a second (each dated when posted), then each row's
    time from that date to its settling (its applying ended, at the runner's commit), in
    milliseconds."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    marker = uuid.uuid4().hex
    try:
        started = time.perf_counter()
        for n in range(count):
            time.sleep(max(0.0, started + n / rate - time.perf_counter()))
            event = message_event(f"messaging:bench{n % 5}", text=marker, user_id=user_id)
            body = json.dumps(event).encode()
            headers = {"X-Webhook-Id": str(uuid.uuid4()), "X-Api-Key": API_KEY}
            connection.request("POST", WEBHOOK_PATH, body, {**headers, "X-Signature": sign(body)})
            connection.getresponse().read()
    finally:
        connection.close()
    engine = create_engine(url, poolclass=NullPool)
    text = inbox.c.payload[("message", "text")].as_string()
    query = select(inbox.c.settled_at - inbox.c.event_at).where(text == marker)
    try:
        wait_for(lambda: _settled(url, marker) >= count, "the paced rows settled", timeout=60)
        with engine.connect() as conn:
            return sorted(lag.total_seconds() * 1000 for lag in conn.scalars(query))
    finally:
        engine.dispose()


def _settled(url: str, marker: str | None = None) -> int:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            query = select(func.count()).where(inbox.c.status != "pending")
            if marker is not None:
                query = query.where(inbox.c.payload[("message", "text")].as_string() == marker)
            return int(conn.scalar(query.select_from(inbox)) or 0)
    finally:
        engine.dispose()


def _statuses(url: str) -> dict[str, int]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            query = select(inbox.c.status, func.count()).group_by(inbox.c.status)
            return {str(status): int(n) for status, n in conn.execute(query)}
    finally:
        engine.dispose()


def _known_channels(db_url: str, channels: int) -> str:
    """A user and ``channels`` conversations of theirs, each with its channel in Stream
    (``messaging:bench{n}``), so that every event posted is applied as a message; the
    user's id."""
    user_id = uuid.uuid4()
    engine = create_engine(db_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(User.__table__.insert(), [{"id": user_id, "email": "bench@example.com"}])
        ids = [uuid.uuid4() for _ in range(channels)]
        conn.execute(Conversation.__table__.insert(), [{"id": c} for c in ids])
        conn.execute(
            ConversationParticipant.__table__.insert(),
            [{"conversation_id": c, "user_id": user_id} for c in ids],
        )
        conn.execute(
            channel_map.insert(),
            [
                {
                    "conversation_id": str(c),
                    "channel_type": "messaging",
                    "channel_id": f"bench{n}",
                    "in_stream_at": datetime.now(UTC),
                }
                for n, c in enumerate(ids)
            ],
        )
    engine.dispose()
    return str(user_id)


def measure(webhooks: int, threads: int, channels: int) -> dict[str, Any]:
    """Post ``webhooks`` events from ``threads`` threads; the figures."""
    port = free_port()
    with outbox_database("stream_outbox_bench_inbound") as db_url:
        user_id = _known_channels(db_url, channels)
        bodies = _bodies(webhooks, channels, user_id)
        env = clean_environ(
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **product_env(db_url, REDIS_URL, "http://127.0.0.1:9"),
        )
        process = start(script("stream-outbox", "inbound", "--port", str(port)), env=env)
        try:
            serving(process, f"http://127.0.0.1:{port}/healthz")
            failures: list[int] = []
            shares = [bodies[n::threads] for n in range(threads)]
            clients = [threading.Thread(target=_post_all, args=(port, s, failures)) for s in shares]
            cpu_before = _cpu_seconds(process.pid)
            started = time.perf_counter()
            for client in clients:
                client.start()
            for client in clients:
                client.join()
            received = time.perf_counter() - started
            cpu_received = _cpu_seconds(process.pid) - cpu_before
            applied_by_then = _settled(db_url)
            wait_for(lambda: _settled(db_url) >= webhooks, "every row settled", timeout=600)
            applied = time.perf_counter() - started
            cpu_applied = _cpu_seconds(process.pid) - cpu_before
            statuses = _statuses(db_url)
            lags = _paced_lags(port, db_url, PACED_RATE, PACED_COUNT, user_id)
        finally:
            stop(process, timeout=60, check=False)
    left = webhooks - applied_by_then
    return {
        "webhooks": webhooks,
        "client_threads": threads,
        "channels": channels,
        "refused": len(failures),
        "rows_by_status": statuses,
        "received_per_second": round(webhooks / received),
        "applied_per_second": round(webhooks / applied),
        # The process's own CPU time: its rate on one free core, however loaded the machine
        "received_per_cpu_second": round(webhooks / max(cpu_received, 1e-9)),
        "applied_per_cpu_second": round(webhooks / max(cpu_applied, 1e-9)),
        # The rows left once every post was answered, applied with the process to itself
        # (None: none were left)
        "applied_after_receiving_per_second": (
            round(left / max(applied - received, 1e-9)) if left else None
        ),
        "load_average": os.getloadavg()[0],
        # Paced as in the lag goal: an event's date to its row settled
        "paced_rate": PACED_RATE,
        "lag_ms_p50": round(lags[len(lags) // 2], 1),
        "lag_ms_p99": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 1),
        "seconds_to_receive": round(received, 2),
        "seconds_to_apply": round(applied, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--channels", type=int, default=50)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    results = measure(args.webhooks, args.threads, args.channels)
    print(json.dumps(results, indent=2))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
