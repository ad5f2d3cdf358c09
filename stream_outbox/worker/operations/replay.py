"""Replay: failed rows sent back to pending, paced, so the relay picks them up as they come due.

By row ids, by filters, or by cause (an error group). Each replay writes its audit
entry in the transaction that changes the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, bindparam, func, select, update

from stream_outbox.app_hooks.outbox import Status, outbox
from stream_outbox.worker.error_groups import find_group
from stream_outbox.worker.errors import AdminError
from stream_outbox.worker.operations.rows import Filters, failure_groups
from stream_outbox.worker.store import audit

__all__ = ["replay", "replay_group"]

_AUDIT_IDS_MAX = 1000


def replay(
    engine: Engine,
    *,
    actor: str,
    ids: Sequence[int] = (),
    filters: Filters | None = None,
    dry_run: bool = False,
    per_second: float = 50.0,
    cause: str | None = None,
) -> list[int]:
    """Send failed rows back to pending, paced at ``per_second``; returns their ids.

    By ids (each must exist and be failed, or nothing changes) or by filters
    (failed rows only). The relay picks them up as they come due.
    """
    if per_second <= 0:
        raise AdminError("--per-second must be positive")
    if bool(ids) == (filters is not None):
        raise AdminError("replay needs row ids or --all-failed with filters, not both")
    with engine.begin() as conn:
        if ids:
            chosen = _failed_ids(conn, ids)
        else:
            assert filters is not None
            if filters.status not in (None, Status.FAILED):
                raise AdminError("only failed rows can be replayed")
            query = (
                select(outbox.c.id)
                .where(outbox.c.status == Status.FAILED, *filters.where())
                .order_by(outbox.c.id)
            )
            chosen = list(conn.scalars(query))
        if dry_run or not chosen:
            return chosen
        _pace(conn, chosen, per_second)
        detail = {"ids": chosen[:_AUDIT_IDS_MAX], "per_second": per_second}
        if filters is not None:
            detail["filters"] = filters.as_dict()
        if cause is not None:
            detail["cause"] = cause
        audit.write(conn, actor=actor, action="replay", count=len(chosen), detail=detail)
    return chosen


def replay_group(
    engine: Engine, *, actor: str, key: str, until: datetime | None = None, per_second: float = 50
) -> list[int]:
    """Replay the failed rows of one cause (updated by ``until``), paced and audited."""
    group = find_group(failure_groups(engine, until, with_ids=True), key)
    cause = str(group.cause)
    return replay(engine, actor=actor, ids=group.ids, per_second=per_second, cause=cause)


def _failed_ids(conn: Connection, ids: Sequence[int]) -> list[int]:
    wanted = sorted(set(ids))
    found = dict(
        conn.execute(select(outbox.c.id, outbox.c.status).where(outbox.c.id.in_(wanted))).all()
    )
    missing = [i for i in wanted if i not in found]
    if missing:
        raise AdminError(f"no outbox row with id {', '.join(map(str, missing[:10]))}")
    not_failed = [f"{i} ({found[i]})" for i in wanted if found[i] != Status.FAILED]
    if not_failed:
        raise AdminError(f"only failed rows can be replayed: {', '.join(not_failed[:10])}")
    return wanted


def _pace(conn: Connection, ids: list[int], per_second: float) -> None:
    """Make the rows pending, due one after another at ``per_second`` (one batched statement)."""
    now = datetime.now(UTC)
    conn.execute(
        update(outbox)
        .where(outbox.c.id == bindparam("row_id"))
        .values(
            status=Status.PENDING,
            available_at=bindparam("due"),
            dispatched_at=None,
            updated_at=func.now(),
        ),
        [
            {"row_id": row_id, "due": now + timedelta(seconds=position / per_second)}
            for position, row_id in enumerate(ids)
        ],
    )
