"""A statement after a bulk load, in the same transaction, with the capture triggers.

The capture triggers remember the targets a transaction wrote in a transaction-local
setting (``stream_outbox.written``, capped at ``WRITTEN_MAX`` characters), which every
later firing of the transaction reads. The script loads ``--users`` new users (each a
target) by ``COPY ... FROM STDIN`` in one transaction, then times ``--statements``
single-row statements in that same transaction (an ``INSERT`` of a new user, then an
``UPDATE`` of a loaded user's email, alternating), beside the same statements in a
transaction with no load before them. It prints the setting's length after the load,
the load's time and the median time of a later statement in each case. Both
transactions roll back; one scratch database.

    uv run python -m benchmarks.after_copy [--users 1000000] [--statements 200]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

import psycopg

from benchmarks.copy_load import dsn, set_triggers
from benchmarks.figures import median
from tests.support.database import outbox_database

_LENGTH = "SELECT coalesce(length(current_setting('stream_outbox.written', true)), 0)"
_INSERT = "INSERT INTO users (id, email) VALUES (%s, %s)"
_UPDATE = "UPDATE users SET email = email || '.' WHERE id = %s"


def _load(conn: psycopg.Connection[Any], users: int) -> tuple[float, list[uuid.UUID]]:
    """``users`` new users by COPY, in the open transaction: seconds, their ids."""
    ids = [uuid.uuid4() for _ in range(users)]
    start = time.perf_counter()
    with conn.cursor() as cur, cur.copy("COPY users (id, email) FROM STDIN") as copy:
        for user in ids:
            copy.write_row((user, f"{user.hex}@example.com"))
    return time.perf_counter() - start, ids


def _statements(conn: psycopg.Connection[Any], loaded: list[uuid.UUID], n: int) -> list[float]:
    """Seconds of each of ``n`` single-row statements, in the open transaction."""
    samples = []
    for i in range(n):
        start = time.perf_counter()
        if i % 2 == 0 or not loaded:
            user = uuid.uuid4()
            conn.execute(_INSERT, (user, f"{user.hex}@example.com"))
        else:
            conn.execute(_UPDATE, (loaded[i % len(loaded)],))
        samples.append(time.perf_counter() - start)
    return samples


def _one_transaction(conn: psycopg.Connection[Any], users: int, statements: int) -> dict[str, Any]:
    seconds, loaded = _load(conn, users) if users else (0.0, [])
    length = conn.execute(_LENGTH).fetchone()
    samples = _statements(conn, loaded, statements)
    conn.rollback()
    return {
        "load_seconds": seconds,
        "written_chars": int(length[0]) if length else 0,
        "statement_ms": median(samples) * 1000,
    }


def measure(users: int = 1_000_000, statements: int = 200) -> dict[str, Any]:
    """A later statement's median time, after a load of ``users`` and after none."""
    with (
        outbox_database("stream_outbox_bench_after_copy") as url,
        psycopg.connect(dsn(url)) as conn,
    ):
        set_triggers(url, True)
        baseline = _one_transaction(conn, 0, statements)
        loaded = _one_transaction(conn, users, statements)
        set_triggers(url, False)
    return {"users": users, "statements": statements, "baseline": baseline, "loaded": loaded}


def rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The report's rows (``benchmarks.report``)."""
    base, loaded = result["baseline"], result["loaded"]
    return [
        (
            f"a statement after a COPY of {result['users']:,} users, same transaction",
            f"{loaded['statement_ms']:.2f} ms (no COPY before: {base['statement_ms']:.2f} ms)",
            f"written setting {loaded['written_chars']:,} chars",
            f"COPY {loaded['load_seconds']:.1f} s",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--statements", type=int, default=200)
    parser.add_argument("--json", dest="json_path", help="also write the figures to this file")
    args = parser.parse_args()
    result = measure(args.users, args.statements)
    for row in rows(result):
        print(" | ".join(row))
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump({"after_copy": result}, fh, indent=2)


if __name__ == "__main__":
    main()
