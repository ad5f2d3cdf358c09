"""Resync and backfill runs: an outbox row for every user and conversation, resumably.

A run keeps its position (the last id written per kind) in its audit row, so an
interrupted run continues after the last id it wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.capture import write_changes
from stream_outbox.app_hooks.changes import Change, Target
from stream_outbox.worker.errors import AdminError
from stream_outbox.worker.store import audit

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
    run_id, position = _open_run(
        engine, actor=actor, action=event, kinds=list(kinds), resume=resume
    )
    counts = {kind: int(position.get(f"{kind}_count", 0)) for kind in kinds}
    for kind in kinds:
        after = position.get(kind)
        while True:
            with engine.begin() as conn:
                ids = (select_ids or partial(reads.ids_after, binding))(conn, kind, after, batch)
                changes = [Change(Target(kind, i), event, payload or {}) for i in ids]
                write_changes(conn, changes)
                counts[kind] += len(ids)
                if ids:
                    after = position[kind] = ids[-1]
                position[f"{kind}_count"] = counts[kind]
                detail = {**position, "finished": False}
                audit.update_entry(conn, run_id, detail=detail, count=sum(counts.values()))
            if progress is not None:
                progress(kind, len(ids))
            if len(ids) < batch:
                break
    with engine.begin() as conn:
        audit.update_entry(conn, run_id, detail={**position, "finished": True})
    return counts


def check_resync_kinds(kinds: Sequence[str]) -> None:
    """Only users and conversations are resynced (messages follow their conversation)."""
    for kind in kinds:
        if kind not in ("user", "conversation"):
            raise AdminError(f"cannot resync {kind!r}: use user or conversation")


def _open_run(
    engine: Engine, *, actor: str, action: str, kinds: list[str], resume: bool
) -> tuple[int, dict[str, Any]]:
    """The unfinished run of ``action`` to resume, or a new audit entry for a new run."""
    with engine.begin() as conn:
        last = audit.latest(conn, action) if resume else None
        if last is not None and not last.detail.get("finished", True):
            return last.id, last.detail
        detail = {"kinds": kinds, "finished": False}
        run_id = audit.write(conn, actor=actor, action=action, count=0, detail=detail)
    return run_id, {"kinds": kinds}
