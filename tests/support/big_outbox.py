"""A big outbox written fast, for the dashboard's browser test and screenshots: rows settled
over the last day by one ``INSERT ... SELECT generate_series``, a few thousand of them
failed of several causes, and a few rows pending.

What it writes (``fill(engine)``, the defaults):

* ``rows`` settled rows (1,000,000), ids in settle order, settled over the 24 hours
  before now as a daily wave: busiest 12 hours ago (twice the mean rate), quietest at
  either end (two thirds of it); each created a few seconds before it settled, except
  around the failure burst, where the delay rises to 25 minutes and back (a backlog);
* failed rows (``attempts`` 5): every 500th row, of three background causes in turn, and
  a burst of one more cause (every 4th row of 1% of the day, about 7 hours ago);
* ``pending`` rows (50) created over the last 10 minutes, the oldest ``oldest_pending``
  ago (written after the big insert, on the clock, so the age holds as the test reads it).

Failed rows carry their cause key and the settled rows are counted into the per-minute
rollups, as the repository does when rows settle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Engine, text

from stream_outbox.worker.error_groups import cause_of
from stream_outbox.worker.store.rollups import COUNT_FROM_ROWS

__all__ = ["BURST", "CAUSES", "Cause", "Fill", "fill"]


@dataclass(frozen=True)
class Cause:
    """A failure the fill writes: its ``last_error`` (``{n}`` varies per row), the kind of
    row it fails, and the cause as the dashboard names it (numbers as ``<n>``)."""

    error: str
    kind: str
    shown: str


CAUSES = (
    Cause(
        "UpdateUsers HTTP 400 code 4: user {n} name is too long (max 100)",
        "user",
        "UpdateUsers HTTP 400 code 4: user <n> name is too long (max <n>)",
    ),
    Cause(
        "GetOrCreateChannel HTTP 400 code 16: channel {n} is frozen",
        "conversation",
        "GetOrCreateChannel HTTP 400 code 16: channel <n> is frozen",
    ),
    Cause(
        "after 5 attempts: SendMessage HTTP 429 code 9: Too many requests",
        "message",
        "SendMessage HTTP 429 code 9: Too many requests",
    ),
)
BURST = Cause(
    "SendMessage HTTP 400 code 4: message {n} has an invalid attachment",
    "message",
    "SendMessage HTTP 400 code 4: message <n> has an invalid attachment",
)
KINDS = ("user", "conversation", "message")


@dataclass(frozen=True)
class Fill:
    """What :func:`fill` wrote: rows by status and the failed rows of each cause."""

    done: int
    failed_by_cause: dict[Cause, int]
    pending: int
    oldest_pending_seconds: float

    @property
    def failed(self) -> int:
        return sum(self.failed_by_cause.values())


# One pass over generate_series: t is the row's place in the day (0..1), bent into the
# daily wave (settled = start + day * (t + wave * sin(2 pi t) / (2 pi))).
_SETTLED = text(
    """
    INSERT INTO stream_outbox (target_kind, target_id, event, status, attempts, last_error,
                               cause_key, available_at, created_at, updated_at)
    WITH rows AS (
        SELECT i, (i - 0.5) / :rows AS t,
               i % :every = 0 AS background,
               i > :burst_from AND i <= :burst_to AND i % :burst_every = 0
                   AND i % :every <> 0 AS burst
        FROM generate_series(1, :rows) AS i
    ), timed AS (
        SELECT rows.*,
               now() - interval '1 day'
                   + interval '1 day' * (t + :wave * sin(2 * pi() * t) / (2 * pi())) AS settled,
               make_interval(secs => 2 + i % 5
                   + :hump_seconds * greatest(0, 1 - abs(t - :hump_at) / :hump_width)) AS delay
        FROM rows
    )
    SELECT CASE WHEN background THEN (CAST(:cause_kinds AS text[]))[(i / :every) % :causes + 1]
                WHEN burst THEN :burst_kind
                ELSE (CAST(:kinds AS text[]))[i % 3 + 1] END,
           i::text, 'insert',
           CASE WHEN background OR burst THEN 'failed' ELSE 'done' END,
           CASE WHEN background OR burst THEN 5 ELSE 1 END,
           replace(CASE WHEN background THEN (CAST(:errors AS text[]))[(i / :every) % :causes + 1]
                        WHEN burst THEN :burst_error END, '{n}', (i % 997)::text),
           CASE WHEN background THEN (CAST(:keys AS text[]))[(i / :every) % :causes + 1]
                WHEN burst THEN :burst_key END,
           settled - delay, settled - delay, settled
    FROM timed
    """
)
_PENDING = text(
    """
    INSERT INTO stream_outbox (target_kind, target_id, event, available_at, created_at, updated_at)
    SELECT 'message', 'pending-' || k, 'insert', at, at, at
    FROM generate_series(0, :pending - 1) AS k,
         LATERAL (SELECT clock_timestamp()
                         - make_interval(secs => :oldest * (1 - k::float / :pending)) AS at
                 ) AS times
    """
)


def _multiples(of: int, low: int, high: int) -> int:
    """How many multiples of ``of`` lie in ``(low, high]``."""
    return high // of - low // of


def fill(
    engine: Engine,
    rows: int = 1_000_000,
    pending: int = 50,
    oldest_pending: float = 605.0,
    every: int = 500,
    burst_every: int = 4,
) -> Fill:
    """Write the big outbox described above into ``engine``'s (empty) outbox; what it wrote."""
    burst_from, burst_to = int(rows * 0.79), int(rows * 0.80)
    params = {
        "rows": rows,
        "every": every,
        "causes": len(CAUSES),
        "errors": [cause.error for cause in CAUSES],
        "keys": [cause_of(cause.error).key for cause in CAUSES],
        "burst_key": cause_of(BURST.error).key,
        "cause_kinds": [cause.kind for cause in CAUSES],
        "kinds": list(KINDS),
        "burst_from": burst_from,
        "burst_to": burst_to,
        "burst_every": burst_every,
        "burst_kind": BURST.kind,
        "burst_error": BURST.error,
        "wave": 0.5,
        "hump_at": (burst_from + burst_to) / 2 / rows,
        "hump_width": 45 / 1440,  # 45 minutes of the day either side
        "hump_seconds": 1500,
    }
    with engine.begin() as conn:
        conn.execute(_SETTLED, params)
        conn.execute(_PENDING, {"pending": pending, "oldest": oldest_pending})
        conn.execute(COUNT_FROM_ROWS)  # the rollups, as the repository writes them
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE stream_outbox"))
    background = rows // every
    failed = {
        cause: sum(1 for j in range(1, background + 1) if j % len(CAUSES) == k)
        for k, cause in enumerate(CAUSES)
    }
    failed[BURST] = _multiples(burst_every, burst_from, burst_to) - _multiples(
        math.lcm(burst_every, every), burst_from, burst_to
    )
    return Fill(rows - sum(failed.values()), failed, pending, oldest_pending)
