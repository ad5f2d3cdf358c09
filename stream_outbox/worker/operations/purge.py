"""Purge: done rows older than the retention deleted in batches, so the table stays small;
the rollups of the minutes before it with them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, select

from stream_outbox.app_hooks.outbox import Status, outbox
from stream_outbox.worker.errors import AdminError
from stream_outbox.worker.store import audit, rollups
from stream_outbox.worker.store.cutover import read_cutover

__all__ = ["purge"]


def purge(engine: Engine, *, actor: str, older_than: timedelta, batch: int = 5000) -> int:
    """Delete done rows older than ``older_than`` in batches (short transactions).

    While a Stream import is pending, rows worked on since its export's snapshot are
    kept whatever their age: its completion reconciles their targets again. The rollups
    of the minutes before the cutoff go too (counted in the audit entry's detail)."""
    if batch < 1:
        raise AdminError("--batch must be at least 1")
    cutoff = datetime.now(UTC) - older_than
    with engine.connect() as conn:
        cutover = read_cutover(conn)
    if cutover is not None and not cutover.imported and cutover.since is not None:
        cutoff = min(cutoff, cutover.since)
    total = 0
    while True:
        with engine.begin() as conn:
            ids = list(
                conn.scalars(
                    select(outbox.c.id)
                    .where(outbox.c.status == Status.DONE, outbox.c.updated_at < cutoff)
                    .order_by(outbox.c.id)
                    .limit(batch)
                )
            )
            if ids:
                conn.execute(delete(outbox).where(outbox.c.id.in_(ids)))
            total += len(ids)
        if len(ids) < batch:
            break
    with engine.begin() as conn:
        minutes = rollups.prune(conn, cutoff)
    detail = {"older_than": str(older_than), "rollup_rows": minutes}
    audit.record(engine, actor=actor, action="purge", count=total, detail=detail)
    return total
