"""The outbox's figures now: rows by status and kind, lag, recent failures, Stream calls.

Open rows are counted through their partial indexes, failed rows read from the counts
the outbox's triggers keep per cause (``stream_outbox_failed``); done rows are not
scanned: their figure is the rows settled done in the kept history, summed from the
per-minute rollups (``stream_outbox_settled``, pruned with them by ``admin purge``).
Over time (rows settled per minute, the oldest pending age) is :mod:`.series`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, func, literal, select, union_all

from stream_outbox.app_hooks.outbox import Status, outbox, settled_per_minute
from stream_outbox.worker.store.failed_counts import failed_counts

__all__ = ["read_stats", "stream_call_figures"]


def read_stats(engine: Engine) -> dict[str, Any]:
    """Counts by status and kind (done: settled done in the kept history), the oldest
    pending age (pending or dispatched: not in Stream yet), failures in the last hour."""
    c = outbox.c
    hour_ago = func.now() - timedelta(hours=1)
    # Open rows through their partial indexes; failed rows as the triggers count them (and
    # any failed without a cause key through theirs); done rows from the rollups
    open_rows = [
        select(literal(s.value), c.target_kind, func.count())
        .where(c.status == s)
        .group_by(c.target_kind)
        for s in (Status.PENDING, Status.DISPATCHED)
    ]
    counted = failed_counts().subquery()
    failed = select(
        literal(Status.FAILED.value), counted.c.target_kind, func.sum(counted.c.rows)
    ).group_by(counted.c.target_kind)
    unkeyed = (
        select(literal(Status.FAILED.value), c.target_kind, func.count())
        .where(c.status == Status.FAILED, c.cause_key.is_(None))
        .group_by(c.target_kind)
    )
    done = (
        select(
            settled_per_minute.c.status,
            settled_per_minute.c.target_kind,
            func.sum(settled_per_minute.c.rows),
        )
        .where(settled_per_minute.c.status == Status.DONE)
        .group_by(settled_per_minute.c.status, settled_per_minute.c.target_kind)
    )
    with engine.connect() as conn:
        by = conn.execute(union_all(*open_rows, failed, unkeyed, done)).all()
        # The oldest row not in Stream yet, pending or dispatched (as the lag chart reads it)
        firsts = [
            conn.scalar(select(func.min(c.created_at)).where(c.status == s))
            for s in (Status.PENDING, Status.DISPATCHED)
        ]
        oldest = min((first for first in firsts if first is not None), default=None)
        recent = conn.scalar(
            select(func.count()).where(c.status == Status.FAILED, c.updated_at >= hour_ago)
        )
        now = conn.scalar(select(func.now()))
    counts: dict[str, dict[str, int]] = {status.value: {} for status in Status}
    for status, kind, n in by:
        counts[status][kind] = counts[status].get(kind, 0) + int(n)
    lag = (now - oldest).total_seconds() if oldest is not None and now is not None else 0.0
    return {
        "by_status": {status: sum(kinds.values()) for status, kinds in counts.items()},
        "by_status_and_kind": counts,
        "oldest_pending_age_seconds": round(max(lag, 0.0), 3),
        "failed_last_hour": int(recent or 0),
    }


def stream_call_figures(urls: Sequence[str], timeout: float = 2.0) -> dict[str, Any]:
    """Stream calls and 429s summed over the workers' Prometheus endpoints.

    Metrics live in the worker processes; an endpoint that does not answer is listed
    under ``unreachable`` rather than failing the stats.
    """
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    calls, limited, unreachable = 0.0, 0.0, []
    for url in urls:
        try:
            text = requests.get(url, timeout=timeout).text
        except requests.RequestException:
            unreachable.append(url)
            continue
        for family in text_string_to_metric_families(text):
            if family.name != "stream_outbox_stream_calls":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    calls += sample.value
                    limited += sample.value if sample.labels.get("status") == "429" else 0
    return {"calls": int(calls), "rate_limited": int(limited), "unreachable": unreachable}
