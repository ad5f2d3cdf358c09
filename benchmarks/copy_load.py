"""A bulk load of conversation participants, without and with the capture triggers.

The reference app's ``conversation_participants``: ``--conversations`` x ``--users``
rows (1,000 x 100 = 100,000 by default), the users and conversations created first,
loaded in one transaction by psycopg's ``COPY ... FROM STDIN`` (the rows built in
memory beforehand: the timing is the server's load and the COMMIT) and by one
``INSERT ... SELECT`` (a cross join of the conversations and the users):

* ``none`` - no capture trigger installed (the session listeners never see a COPY);
* ``triggers`` - ``install_triggers(conn, REFERENCE_BINDING)``: the statement trigger
  over the transition table writes one outbox row per conversation.

One scratch database; the table is truncated between loads, and the triggers
installed and dropped between rounds (``--repeat``), the modes alternating. The
script prints the median time of each, the ratio triggers/none and the outbox
rows each load wrote (the goal: one per conversation).

    uv run python -m benchmarks.copy_load [--conversations 1000] [--users 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import json
import time
import uuid
from typing import Any

import psycopg

from benchmarks.figures import median
from stream_outbox.app_hooks.reference import REFERENCE_BINDING
from stream_outbox.app_hooks.triggers import drop_triggers, install_triggers
from tests.support.database import outbox_database

_COPY = "COPY conversation_participants (conversation_id, user_id) FROM STDIN"
_INSERT_SELECT = (
    "INSERT INTO conversation_participants (conversation_id, user_id) "
    "SELECT c.id, u.id FROM conversations c CROSS JOIN users u"
)
METHODS = ("copy", "insert_select")
MODES = ("none", "triggers")


def dsn(url: str) -> str:
    """The SQLAlchemy URL as libpq takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _seed(conn: psycopg.Connection[Any], conversations: int, users: int) -> str:
    """The users and conversations; the COPY's rows (tab-separated text)."""
    user_ids = [uuid.uuid4() for _ in range(users)]
    conversation_ids = [uuid.uuid4() for _ in range(conversations)]
    with conn.cursor() as cur:
        with cur.copy("COPY users (id, email) FROM STDIN") as copy:
            for user in user_ids:
                copy.write_row((user, f"{user.hex}@example.com"))
        with cur.copy("COPY conversations (id) FROM STDIN") as copy:
            for conversation in conversation_ids:
                copy.write_row((conversation,))
    conn.commit()
    buf = io.StringIO()
    for conversation in conversation_ids:
        for user in user_ids:
            buf.write(f"{conversation}\t{user}\n")
    return buf.getvalue()


def _outbox_rows(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM stream_outbox").fetchone()
    conn.commit()
    return int(row[0]) if row else 0


def _load(conn: psycopg.Connection[Any], method: str, data: str) -> tuple[float, int, int]:
    """One load in one transaction: seconds (to COMMIT), rows loaded, outbox rows written."""
    before = _outbox_rows(conn)
    start = time.perf_counter()
    with conn.cursor() as cur:
        if method == "copy":
            with cur.copy(_COPY) as copy:
                copy.write(data)
            loaded = cur.rowcount
        else:
            cur.execute(_INSERT_SELECT)
            loaded = cur.rowcount
    conn.commit()
    elapsed = time.perf_counter() - start
    written = _outbox_rows(conn) - before
    conn.execute("TRUNCATE conversation_participants")
    conn.commit()
    return elapsed, loaded, written


def set_triggers(url: str, on: bool) -> None:
    """Install the reference app's capture triggers in the database at ``url``, or drop them."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    with engine.begin() as conn:
        if on:
            install_triggers(conn, REFERENCE_BINDING)
        else:
            drop_triggers(conn)
    engine.dispose()


def measure(conversations: int = 1000, users: int = 100, repeat: int = 3) -> dict[str, Any]:
    """Each method in each mode ``repeat`` times on a scratch database; the figures."""
    runs: dict[str, dict[str, list[tuple[float, int, int]]]] = {
        method: {mode: [] for mode in MODES} for method in METHODS
    }
    with (
        outbox_database("stream_outbox_bench_copy") as url,
        psycopg.connect(dsn(url)) as conn,
    ):
        data = _seed(conn, conversations, users)
        for _ in range(repeat):
            for mode in MODES:
                set_triggers(url, mode == "triggers")
                for method in METHODS:
                    runs[method][mode].append(_load(conn, method, data))
        set_triggers(url, False)
    result: dict[str, Any] = {
        "conversations": conversations,
        "users": users,
        "rows": conversations * users,
        "repeat": repeat,
        "methods": {},
    }
    for method, by_mode in runs.items():
        figures: dict[str, Any] = {}
        for mode, samples in by_mode.items():
            figures[mode] = {
                "seconds": median([s for s, _, _ in samples]),
                "all_seconds": [s for s, _, _ in samples],
                "rows_loaded": samples[-1][1],
                "outbox_rows": samples[-1][2],
                "outbox_rows_all": [w for _, _, w in samples],
            }
        figures["ratio_triggers_none"] = figures["triggers"]["seconds"] / figures["none"]["seconds"]
        result["methods"][method] = figures
    return result


def rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The report's rows (``benchmarks.report``)."""
    out = []
    for method, figures in result["methods"].items():
        how = "COPY FROM STDIN" if method == "copy" else "INSERT ... SELECT"
        none, triggers = figures["none"], figures["triggers"]
        out.append(
            (
                f"bulk load {result['rows']:,} participants ({how}, "
                f"{result['conversations']:,} conversations)",
                f"no triggers {none['seconds']:.2f} s / triggers {triggers['seconds']:.2f} s",
                f"triggers/none {figures['ratio_triggers_none']:.2f}",
                f"outbox rows {none['outbox_rows']:,} / {triggers['outbox_rows']:,} "
                f"(goal {result['conversations']:,})",
            )
        )
    return out


def print_figures(result: dict[str, Any]) -> None:
    """The table of one run."""
    print(
        f"bulk load of {result['rows']:,} conversation participants "
        f"({result['conversations']:,} conversations x {result['users']:,} users), "
        f"median of {result['repeat']}"
    )
    print(f"{'method':<16}{'mode':<10}{'seconds':>10}{'rows':>10}{'outbox rows':>13}  runs (s)")
    for method, figures in result["methods"].items():
        for mode in MODES:
            fig = figures[mode]
            runs = ", ".join(f"{s:.3f}" for s in fig["all_seconds"])
            print(
                f"{method:<16}{mode:<10}{fig['seconds']:>10.3f}{fig['rows_loaded']:>10,}"
                f"{fig['outbox_rows']:>13,}  {runs}"
            )
        print(f"{method:<16}triggers/none {figures['ratio_triggers_none']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100, help="participants per conversation")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", dest="json_path", help="also write the figures to this file")
    args = parser.parse_args()
    result = measure(args.conversations, args.users, args.repeat)
    print_figures(result)
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump({"copy_load": result}, fh, indent=2)


if __name__ == "__main__":
    main()
