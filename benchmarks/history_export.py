"""History export and import: a million messages as Stream import files, and into Stream.

A legacy app (users with profiles, two-person conversations, a tenth of them opened by
an event invitation) gets its messages with ``INSERT .. SELECT generate_series`` (one
in 50 a system message, without a sender). Then, at two history sizes (``--sizes``,
the same users and conversations, more messages each):

* ``stream-outbox history export`` as a subprocess: messages per second written and
  validated, and the process's peak RSS (``wait4``'s ``ru_maxrss``);
* ``stream-outbox history import`` of the largest export into the emulator (a process
  of its own) through the real SDK: the time until every file is ``completed``;
* beside it, the SendMessage path's pace for the same history under Stream's limit of
  1,000 SendMessage calls a minute (computed; the rate section measures the pace).

    uv run python -m benchmarks.history_export [--sizes 250000,1000000] [--max-mb 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import backlog
from tests.support.database import outbox_database
from tests.support.emulator import remote_emulator
from tests.support.processes import script

SEND_MESSAGE_PER_MIN = 1_000  # Stream's published server-side limit
WATERMARK = "2030-01-01T00:00:00+00:00"
_SEED = """
CREATE TEMP TABLE u AS SELECT n, gen_random_uuid() AS id FROM generate_series(0, %(users)s - 1) n;
INSERT INTO users (id, email) SELECT id, 'user' || n || '@example.com' FROM u;
INSERT INTO profiles (user_id, full_name) SELECT id, 'User ' || n FROM u;
CREATE TEMP TABLE c AS
  SELECT n, gen_random_uuid() AS id, n %% %(users)s AS a, (n + 1 + n / %(users)s) %% %(users)s AS b
  FROM generate_series(0, %(conversations)s - 1) n;
INSERT INTO conversations (id, created_at) SELECT id, '2020-01-01' FROM c;
INSERT INTO conversation_participants (conversation_id, user_id, last_read_at)
  SELECT c.id, u.id, timestamptz '2020-06-01' FROM c JOIN u ON u.n = c.a
  UNION ALL SELECT c.id, u.id, NULL FROM c JOIN u ON u.n = c.b;
INSERT INTO events (id, organizer_id, title)
  SELECT c.id, u.id, 'Event ' || c.n FROM c JOIN u ON u.n = c.a WHERE c.n %% 10 = 0;
INSERT INTO event_participants (id, event_id, user_id, conversation_id)
  SELECT gen_random_uuid(), c.id, u.id, c.id FROM c JOIN u ON u.n = c.b WHERE c.n %% 10 = 0;
"""
_MESSAGES = """
INSERT INTO messages (id, conversation_id, sender_id, content, created_at)
SELECT gen_random_uuid(), c.id,
       CASE WHEN i %% 50 = 0 THEN NULL WHEN i %% 2 = 0 THEN ua.id ELSE ub.id END,
       'Message ' || i || ': see you at the venue at seven, and bring the tickets please',
       timestamptz '2020-01-01' + i * interval '1 second'
FROM generate_series(%(first)s, %(last)s - 1) i
JOIN c ON c.n = i %% %(conversations)s
JOIN u ua ON ua.n = c.a JOIN u ub ON ub.n = c.b
"""


def seed(conn: psycopg.Connection[Any], users: int, conversations: int) -> None:
    """Users, conversations and their members (temp tables ``u`` and ``c`` number them)."""
    for statement in filter(str.strip, _SEED.split(";")):
        conn.execute(statement, {"users": users, "conversations": conversations})


def add_messages(conn: psycopg.Connection[Any], first: int, last: int, conversations: int) -> float:
    """Messages ``first`` to ``last - 1``; the seconds it took."""
    started = time.monotonic()
    conn.execute(_MESSAGES, {"first": first, "last": last, "conversations": conversations})
    conn.execute("ANALYZE")
    return time.monotonic() - started


def _env(url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": url, **extra}


def export(url: str, folder: Path, max_mb: int) -> dict[str, Any]:
    """``stream-outbox history export`` in a subprocess: its time, peak RSS and counts."""
    args = script("stream-outbox", "history", "export", str(folder))
    args += ["--until", WATERMARK, "--max-mb", str(max_mb), "--json"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(args, env=_env(url), stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        printed, errors = out.read(), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"export failed: {errors[-2000:]}")
    detail = json.loads(printed)
    messages = int(detail["counts"]["message"])
    return {
        "messages": messages,
        "counts": detail["counts"],
        "files": len(detail["files"]),
        "bytes": sum(Path(f).stat().st_size for f in detail["files"]),
        "seconds": seconds,
        "messages_per_s": messages / seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def import_into_emulator(url: str, folder: Path) -> dict[str, Any]:
    """``stream-outbox history import`` into an emulator process: the time to completed."""
    with remote_emulator() as emu:
        env = _env(
            url,
            GETSTREAM_API_KEY=emu.api_key,
            GETSTREAM_API_SECRET=emu.api_secret,
            STREAM_CHAT_URL=emu.base_url,
        )
        args = script("stream-outbox", "history", "import", str(folder), "--poll", "0.5")
        started = time.monotonic()
        out = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - started
        if out.returncode != 0:
            raise RuntimeError(f"import failed: {(out.stdout + out.stderr)[-2000:]}")
        state = emu.state()
    held = sum(len(messages) for messages in state["messages"].values())
    return {"seconds": seconds, "messages_in_stream": held, "files": len(out.stdout.splitlines())}


@contextmanager
def _removed(folder: Path) -> Iterator[None]:
    try:
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure(
    sizes: list[int], users: int, conversations: int, max_mb: int, do_import: bool = True
) -> dict[str, Any]:
    """Export at each history size (messages added between), then import the largest."""
    results: dict[str, Any] = {"users": users, "conversations": conversations, "exports": []}
    work = Path(tempfile.mkdtemp(prefix="bench-history-"))
    with outbox_database("stream_outbox_bench_history") as url, _removed(work):
        with psycopg.connect(backlog._conninfo(url), autocommit=True) as conn:
            seed(conn, users, conversations)
            done = 0
            for size in sorted(sizes):
                seeded = add_messages(conn, done, size, conversations)
                done = size
                print(f"seeded {size:,} messages ({seeded:.0f} s); exporting", file=sys.stderr)
                figures = export(url, work / f"export-{size}", max_mb)
                results["exports"].append({**figures, "seed_seconds": seeded})
        largest = work / f"export-{max(sizes)}"
        if do_import:
            print("importing into the emulator", file=sys.stderr)
            results["import"] = import_into_emulator(url, largest)
    messages = max(sizes)
    results["send_message_minutes"] = messages / SEND_MESSAGE_PER_MIN
    return results


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The report's table rows."""
    out = []
    for r in results["exports"]:
        out.append(
            (
                f"history export, {r['messages']:,} messages",
                f"{r['messages_per_s']:,.0f} msg/s ({r['seconds']:.1f} s)",
                f"peak RSS {r['peak_rss_mb']:.0f} MB, CPU {r['cpu_seconds']:.1f} s",
                f"{r['files']} files, {r['bytes'] / 1e6:.0f} MB",
            )
        )
    if "import" in results:
        i = results["import"]
        out.append(
            (
                "history import into the emulator (real SDK)",
                f"{i['seconds']:.1f} s",
                f"{i['messages_in_stream']:,} messages held",
                f"SendMessage at 1,000/min: {results['send_message_minutes'] / 60:.1f} h",
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250000,1000000", help="history sizes (messages)")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--conversations", type=int, default=50_000)
    parser.add_argument("--max-mb", type=int, default=300, help="largest export file, MB")
    parser.add_argument("--no-import", action="store_true", help="export only")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = measure(sizes, args.users, args.conversations, args.max_mb, not args.no_import)
    print(json.dumps(results, indent=2))
    for row in rows(results):
        print(" | ".join(row))


if __name__ == "__main__":
    main()
