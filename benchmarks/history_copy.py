"""One conversation's history copy, in this process: messages a second, and jobs taken.

A legacy conversation of ``--messages`` messages is reconciled with a history payload as
the worker does it (``reconcile_conversations``), job after job (each ending after 1,000
messages, or at half the lock lease), until Stream (the emulator, in process, answering
each SendMessage after ``--latency-ms``) holds every message. Against real PostgreSQL
and Redis; Stream's limits off.

    uv run python -m benchmarks.history_copy [--messages 3000] [--latency-ms 0] [--lease 120]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from benchmarks import backlog
from stream_outbox.emulator import Emulator
from stream_outbox.worker.runtime import Runtime
from stream_outbox.worker.sync.conversations import reconcile_conversations
from tests.support.database import outbox_database
from tests.support.redis import clear_redis, new_prefix, redis_db_url
from tests.support.settings import API_KEY, API_SECRET, product_settings


def legacy_conversation(url: str, messages: int) -> str:
    """A conversation of two written before go-live, with ``messages`` messages."""
    users = [uuid.uuid4() for _ in range(2)]
    cid = uuid.uuid4()
    start = datetime(2023, 1, 1, tzinfo=UTC)
    with psycopg.connect(backlog._conninfo(url)) as conn, conn.cursor() as cur:
        for user in users:
            cur.execute("INSERT INTO users (id, email) VALUES (%s, %s)", (user, f"{user}@x.io"))
        cur.execute("INSERT INTO conversations (id) VALUES (%s)", (cid,))
        cur.executemany(
            "INSERT INTO conversation_participants (conversation_id, user_id) VALUES (%s, %s)",
            [(cid, user) for user in users],
        )
        cur.executemany(
            "INSERT INTO messages (id, conversation_id, sender_id, content, created_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            [
                (uuid.uuid4(), cid, users[k % 2], f"m{k}", start + timedelta(seconds=k))
                for k in range(messages)
            ],
        )
    return str(cid)


def measure(messages: int, latency_ms: float, lease: float) -> dict[str, Any]:
    """Copy one conversation's history job after job; the figures."""
    redis_url, prefix = redis_db_url(), new_prefix("stream_outbox_bench")
    with (
        outbox_database("stream_outbox_bench") as url,
        Emulator(api_key=API_KEY, api_secret=API_SECRET) as emu,
    ):
        emu.set_stream_limits(False)
        cid = legacy_conversation(url, messages)
        settings = product_settings(
            url, redis_url, emu.base_url, prefix=prefix, stream_limits=False, lock_lease=lease
        )
        rt = Runtime.from_settings(settings)
        emu.set_latency(latency_ms, endpoint="SendMessage")
        jobs, held = 0, 0
        started = time.perf_counter()
        try:
            while held < messages:
                reconcile_conversations(rt, {cid: {"legacy": True, "history": True}})
                jobs += 1
                held = sum(len(m) for m in emu.state()["messages"].values())
        finally:
            seconds = time.perf_counter() - started
            rt.engine.dispose()
            rt.redis.close()
            clear_redis(redis_url, prefix)
    return {
        "messages": messages,
        "latency_ms": latency_ms,
        "lease_s": lease,
        "seconds": round(seconds, 2),
        "messages_per_s": round(held / seconds, 1),
        "jobs": jobs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--lease", type=float, default=120.0, help="OUTBOX_LOCK_LEASE, seconds")
    args = parser.parse_args()
    print(json.dumps(measure(args.messages, args.latency_ms, args.lease), indent=2))


if __name__ == "__main__":
    main()
