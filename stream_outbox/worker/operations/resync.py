"""Resync and backfill runs: an outbox row for every user and conversation, resumably.

A run keeps its position (the last id written per kind) in its audit row, so an
interrupted run continues after the last id it wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.capture import write_changes
from stream_outbox.app_hooks.changes import Change, Target
from stream_outbox.app_hooks.outbox import audit
from stream_outbox.worker.errors import AdminError

__all__ = ["check_resync_kinds", "resync"]


def resync(
    engine: Engine,
    binding: Binding,
    *,
    actor: str,
    kinds: Sequence[str] = ("user", "conversation"),
    event: str = "resync",
    payload: dict[str, Any] | None = None,
    batch: int = 1000,
    resume: bool = True,
    progress: Callable[[str, int], None] | None = None,
    select_ids: Callable[[Connection, str, str | None, int], list[str]] | None = None,
) -> dict[str, int]:
    """Write an outbox row for every user and conversation, in id order, resumably.

    The position is kept in the audit row of the run: an interrupted run with
    ``resume`` continues after the last id it wrote.
    """
    check_resync_kinds(kinds)
    run_id, position = _open_run(engine, actor, event, list(kinds), resume)
    counts = {kind: int(position.get(f"{kind}_count", 0)) for kind in kinds}
    for kind in kinds:
        after = position.get(kind)
        while True:
            with engine.begin() as conn:
                ids = (select_ids or binding.ids_after)(conn, kind, after, batch)
                changes = [Change(Target(kind, i), event, payload or {}) for i in ids]
                write_changes(conn, changes)
                counts[kind] += len(ids)
                if ids:
                    after = position[kind] = ids[-1]
                position[f"{kind}_count"] = counts[kind]
                conn.execute(
                    update(audit)
                    .where(audit.c.id == run_id)
                    .values(detail={**position, "finished": False}, row_count=sum(counts.values()))
                )
            if progress is not None:
                progress(kind, len(ids))
            if len(ids) < batch:
                break
    with engine.begin() as conn:
        conn.execute(
            update(audit).where(audit.c.id == run_id).values(detail={**position, "finished": True})
        )
    return counts


def check_resync_kinds(kinds: Sequence[str]) -> None:
    """Only users and conversations are resynced (messages follow their conversation)."""
    for kind in kinds:
        if kind not in ("user", "conversation"):
            raise AdminError(f"cannot resync {kind!r}: use user or conversation")


def _open_run(
    engine: Engine, actor: str, action: str, kinds: list[str], resume: bool
) -> tuple[int, dict[str, Any]]:
    """The unfinished run of ``action`` to resume, or a new audit row for a new run."""
    with engine.begin() as conn:
        if resume:
            last = conn.execute(
                select(audit.c.id, audit.c.detail)
                .where(audit.c.action == action)
                .order_by(audit.c.id.desc())
                .limit(1)
            ).first()
            if last is not None and not (last.detail or {}).get("finished", True):
                return last.id, dict(last.detail)
        run_id = conn.execute(
            insert(audit)
            .values(
                actor=actor, action=action, row_count=0, detail={"kinds": kinds, "finished": False}
            )
            .returning(audit.c.id)
        ).scalar_one()
    return run_id, {"kinds": kinds}
