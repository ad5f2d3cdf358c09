"""A backfill with history under Stream's rate limits: finishes at the limit, almost no 429s.

The emulator limits each endpoint per 60 s window at Stream's self-serve rates, and
the workers' shared budget (``OUTBOX_RATE_LIMITS``) has the same numbers. A legacy
app (conversations with members and message history, nothing synced yet) is
backfilled as ``stream-outbox backfill`` does it (``admin.resync`` over the
``backfill.Scope``, legacy channels and history), then drained by the real relay
and worker. Prints conversations/s, messages/s, Stream calls per message and 429s.

    uv run python -m benchmarks.rate_limited [--conversations 150] [--messages 8]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import create_engine

from benchmarks import backlog
from benchmarks.drain import _settle, _started_at
from benchmarks.pipeline import Processes
from stream_outbox.app_hooks.reference import REFERENCE_BINDING
from stream_outbox.worker.operations.backfill import Scope
from stream_outbox.worker.operations.resync import resync
from tests.support.database import outbox_database
from tests.support.emulator import remote_emulator

# Stream's self-serve limits per minute (its "Rate Limits by Endpoint" table).
STREAM_LIMITS = {
    "GetOrCreateChannel": 10_000,
    "QueryChannels": 10_000,
    "SendMessage": 1_000,
    "QueryUsers": 1_000,
    "UpdateUsers": 300,
    "UpdateUsersPartial": 300,
    "UpdateChannel": 300,
    "UpdateChannelPartial": 300,
    "QueryMembers": 300,
    "DeleteChannel": 60,
    "DeactivateUser": 60,
    "DeactivateUsers": 60,
    "DeleteUser": 60,
    "DeleteUsers": 60,
}


def legacy_app(url: str, conversations: int, messages: int, seed: int = 11) -> dict[str, int]:
    """Users, conversations (2-4 members) and their messages, written before go-live."""
    rng = random.Random(seed)
    users = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(conversations * 2)]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with psycopg.connect(backlog._conninfo(url)) as conn, conn.cursor() as cur:
        with cur.copy("COPY users (id, email) FROM STDIN") as copy:
            for u in users:
                copy.write_row((u, f"{u.hex}@example.com"))
        with cur.copy("COPY conversations (id, created_at) FROM STDIN") as cp_conv:
            members = {}
            for n in range(conversations):
                cid = uuid.UUID(int=rng.getrandbits(128), version=4)
                members[cid] = rng.sample(users, rng.randint(2, 4))
                cp_conv.write_row((cid, start + timedelta(minutes=n)))
        with cur.copy("COPY conversation_participants (conversation_id, user_id) FROM STDIN") as cp:
            for cid, ids in members.items():
                for uid in ids:
                    cp.write_row((cid, uid))
        with cur.copy(
            "COPY messages (id, conversation_id, sender_id, content, created_at) FROM STDIN"
        ) as cp:
            for cid, ids in members.items():
                for m in range(messages):
                    sent = start + timedelta(hours=1, seconds=m)
                    cp.write_row((uuid.uuid4(), cid, rng.choice(ids), f"message {m}", sent))
    return {
        "users": len(users),
        "conversations": conversations,
        "messages": conversations * messages,
    }


def _backfill(url: str) -> dict[str, int]:
    engine = create_engine(url)
    scope = Scope(REFERENCE_BINDING)
    try:
        return resync(
            engine,
            REFERENCE_BINDING,
            actor="benchmark",
            kinds=scope.kinds(),
            event="backfill",
            payload={"legacy": True, "history": True},
            select_ids=scope.selector(),
        )
    finally:
        engine.dispose()


def measure(
    conversations: int, messages: int, workers: int = 1, *, defaults: bool = False
) -> dict[str, Any]:
    """Backfill and drain under the limits; figures from the outbox and the emulator.

    ``defaults``: the emulator applies Stream's own limits (per minute and per second)
    and the workers run with no limit set: they ask the emulator for its limits
    (``get_rate_limits``) as they would ask Stream. Otherwise both get this module's table.
    """
    limits = ",".join(f"{k}={v}" for k, v in STREAM_LIMITS.items())
    emulator = {"stream_limits": True} if defaults else {"rate_limits": STREAM_LIMITS}
    with outbox_database("stream_outbox_bench") as url, remote_emulator(**emulator) as emu:
        app = legacy_app(url, conversations, messages)
        enqueued = _backfill(url)
        paced = {"OUTBOX_STREAM_LIMITS": "true"} if defaults else {"OUTBOX_RATE_LIMITS": limits}
        with Processes(url, emu, "ratelimit", **paced) as procs:
            for n in range(workers):
                procs.worker(n)
            relay_log = procs.relay()
            settled = _settle(url, timeout=1800)
            started = _started_at(relay_log, "relay started")
        counts = emu.request_counts()
        state = emu.state()
    seconds = settled["last"] - started
    sent = sum(len(m) for m in state["messages"].values())
    by_status = counts["by_status"]
    return {
        "app": app,
        "enqueued": enqueued,
        "rows": settled["by_status"],
        "seconds": seconds,
        "conversations_per_s": conversations / seconds,
        "messages_per_s": sent / seconds,
        "messages_in_stream": sent,
        "stream_calls": counts["total"],
        "calls_per_message": counts["total"] / max(1, sent),
        "send_message_per_min": counts["counts"].get("SendMessage", 0) / seconds * 60,
        "send_message_limit_per_min": STREAM_LIMITS["SendMessage"],
        "status_429": sum(n for key, n in by_status.items() if key.endswith(" 429")),
        "calls_by_status": by_status,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=150)
    parser.add_argument("--messages", type=int, default=8, help="messages per conversation")
    parser.add_argument("--json", dest="json_path")
    parser.add_argument(
        "--stream-defaults",
        action="store_true",
        help="Stream's own limits in the emulator, none set in the workers (they ask)",
    )
    args = parser.parse_args()
    result = measure(args.conversations, args.messages, defaults=args.stream_defaults)
    json.dump(result, sys.stdout, indent=2)
    print()
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
