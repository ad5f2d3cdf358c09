"""``stream-outbox admin stats --series``: the dashboard's series, for scripts."""

from __future__ import annotations

from collections.abc import Callable

from click.testing import Result
from sqlalchemy import Engine, text

from tests.support.cli import as_json


def test_stats_series_has_the_last_hour_and_day(
    cli: Callable[..., Result], seeded: dict[str, int], clean_db: Engine
) -> None:
    with clean_db.connect() as conn:
        recent = conn.execute(
            text(
                "SELECT count(*) FROM stream_outbox WHERE status IN ('done', 'failed')"
                " AND updated_at > now() - interval '1 hour'"
            )
        ).scalar_one()
    figures = as_json(cli("admin", "stats", "--json", "--series"))
    hour, day = figures["series"]["hour"], figures["series"]["day"]
    assert (len(hour["points"]), hour["step_seconds"]) == (60, 60)
    assert (len(day["points"]), day["step_seconds"]) == (96, 900)
    settled = sum(p["done"] + p["failed"] for p in hour["points"])
    assert settled == recent >= 2  # the seeded rows settled now, not the month-old one
    assert set(hour["points"][0]) == {"at", "done", "failed", "oldest_pending_seconds"}


def test_stats_series_in_words(cli: Callable[..., Result], seeded: dict[str, int]) -> None:
    out = cli("admin", "stats", "--series").output
    assert "last hour: " in out and "last day: " in out
