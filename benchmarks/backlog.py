"""A mixed outbox backlog in a template database, and fresh copies of it for each run.

The backlog is what an outage leaves behind in a running app: 20% as many users
as rows, 10% as many conversations (2 to 6 members each, 4 on average), and rows
in a random (seeded) order: 40% user rows (each user created, then profile edits)
and 60% conversation rows (each conversation created, then members joining).
Everything is written with COPY, as committed rows: the hooks' cost is measured
by the write-path benchmark, not here.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from tests.support.settings import SERVER_URL


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _app_data(rng: random.Random, rows: int) -> tuple[list[uuid.UUID], dict[uuid.UUID, list[Any]]]:
    users = [_uuid(rng) for _ in range(max(2, rows // 5))]
    conversations: dict[uuid.UUID, list[Any]] = {}
    for _ in range(max(1, rows // 10)):
        conversations[_uuid(rng)] = rng.sample(users, rng.randint(2, 6))
    return users, conversations


def _outbox_rows(
    rng: random.Random, rows: int, users: list[uuid.UUID], conversations: list[uuid.UUID]
) -> list[tuple[str, str, str]]:
    user_rows = max(len(users), int(rows * 0.4))
    conv_rows = max(len(conversations), rows - user_rows)
    out = [("user", str(u), "insert") for u in users]
    out += [("user", str(rng.choice(users)), "update") for _ in range(user_rows - len(users))]
    out += [("conversation", str(c), "insert") for c in conversations]
    out += [
        ("conversation", str(rng.choice(conversations)), "update")
        for _ in range(conv_rows - len(conversations))
    ]
    rng.shuffle(out)
    return out[:rows]


def fill(url: str, rows: int, seed: int = 7) -> dict[str, int]:
    """Write the app's data and ``rows`` pending outbox rows; returns the mix's figures."""
    rng = random.Random(seed)
    users, conversations = _app_data(rng, rows)
    outbox = _outbox_rows(rng, rows, users, list(conversations))
    with psycopg.connect(_conninfo(url)) as conn, conn.cursor() as cur:
        with cur.copy("COPY users (id, email) FROM STDIN") as copy:
            for u in users:
                copy.write_row((u, f"{u.hex}@example.com"))
        with cur.copy("COPY profiles (user_id, full_name) FROM STDIN") as copy:
            for n, u in enumerate(users):
                copy.write_row((u, f"User {n}"))
        with cur.copy("COPY conversations (id) FROM STDIN") as copy:
            for c in conversations:
                copy.write_row((c,))
        with cur.copy("COPY conversation_participants (conversation_id, user_id) FROM STDIN") as cp:
            for c, members in conversations.items():
                for m in members:
                    cp.write_row((c, m))
        with cur.copy("COPY stream_outbox (target_kind, target_id, event) FROM STDIN") as copy:
            for row in outbox:
                copy.write_row(row)
        cur.execute("ANALYZE")
    kinds = [kind for kind, _, _ in outbox]
    return {
        "rows": len(outbox),
        "user_rows": kinds.count("user"),
        "conversation_rows": kinds.count("conversation"),
        "users": len(users),
        "conversations": len(conversations),
        "members": sum(len(m) for m in conversations.values()),
    }


@contextmanager
def clone(template_url: str, keep_rows: int | None = None) -> Iterator[str]:
    """A copy of the template database (``keep_rows``: only the first rows of the backlog)."""
    template = make_url(template_url).database
    name = f"{template}_{uuid.uuid4().hex[:6]}"
    admin = _conninfo(SERVER_URL)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = make_url(template_url).set(database=name).render_as_string(hide_password=False)
    try:
        if keep_rows is not None:
            with psycopg.connect(_conninfo(url), autocommit=True) as conn:
                first = conn.execute("SELECT min(id) FROM stream_outbox").fetchone()
                start = int(first[0]) if first and first[0] is not None else 0
                conn.execute("DELETE FROM stream_outbox WHERE id >= %s", (start + keep_rows,))
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
