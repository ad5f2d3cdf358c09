"""Outbox rows written and read by hand, beside the product's repository."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, insert, select, text

from stream_outbox.app_hooks.outbox import audit, outbox
from stream_outbox.worker.error_groups import cause_of

__all__ = ["add_row", "audits", "newest_row", "settled", "status_counts", "statuses_by_id"]


# A settled row written by hand counted into the rollups, as the repository would have
_COUNT_ROW = text(
    """
    INSERT INTO stream_outbox_settled (minute, status, target_kind, shard, rows, first_created)
    SELECT date_trunc('minute', updated_at), status, target_kind, 0, 1, created_at
    FROM stream_outbox WHERE id = :id AND status IN ('done', 'failed')
    ON CONFLICT (minute, status, target_kind, shard) DO UPDATE
    SET rows = stream_outbox_settled.rows + 1,
        first_created = least(stream_outbox_settled.first_created, excluded.first_created)
    """
)


def add_row(engine: Engine, **values: Any) -> int:
    """Insert one outbox row (a pending user row unless ``values`` say otherwise); its id.

    A done or failed row is counted into the rollups and a failed one gets its cause key,
    as the repository does when it settles rows."""
    row = {"target_kind": "user", "target_id": "u1", "event": "insert", "payload": {}}
    row.update(values)
    if row.get("status") == "failed":
        row.setdefault("cause_key", cause_of(row.get("last_error")).key)
    with engine.begin() as conn:
        row_id = int(conn.execute(insert(outbox).values(**row).returning(outbox.c.id)).scalar_one())
        conn.execute(_COUNT_ROW, {"id": row_id})
    return row_id


def status_counts(engine: Engine) -> dict[str, int]:
    """How many rows have each status."""
    query = select(outbox.c.status, func.count()).group_by(outbox.c.status)
    with engine.connect() as conn:
        return {status: int(n) for status, n in conn.execute(query)}


def settled(engine: Engine, failed: int = 0) -> bool:
    """Nothing pending or dispatched, and exactly ``failed`` failed rows."""
    found = status_counts(engine)
    return set(found) <= {"done", "failed"} and found.get("failed", 0) == failed


def statuses_by_id(engine: Engine) -> dict[int, str]:
    """Each row's status."""
    with engine.connect() as conn:
        found = conn.execute(select(outbox.c.id, outbox.c.status))
        return {int(id_): str(status) for id_, status in found}


def audits(engine: Engine) -> list[dict[str, Any]]:
    """The audit trail, oldest first."""
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(audit).order_by(audit.c.id))]


def newest_row(engine: Engine, kind: str, target: object) -> int:
    """The id of the newest outbox row of a target."""
    query = (
        select(outbox.c.id)
        .where(outbox.c.target_kind == kind, outbox.c.target_id == str(target))
        .order_by(outbox.c.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        found = conn.scalar(query)
    assert found is not None, (kind, target)
    return int(found)
