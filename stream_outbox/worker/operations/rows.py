"""Outbox rows as operators see them: filters, one page of rows, one row, failed rows by cause.

Read-only; bad input raises :class:`AdminError` before anything is read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, func, select
from sqlalchemy.sql.elements import ColumnElement

from stream_outbox.app_hooks.outbox import Status, TargetKind, outbox
from stream_outbox.worker.error_groups import (
    SAMPLES,
    ErrorGroup,
    FailedRow,
    cause_of,
    group_failures,
    merge_groups,
)
from stream_outbox.worker.errors import AdminError
from stream_outbox.worker.operations.times import parse_time
from stream_outbox.worker.store.failed_counts import failed_counts

__all__ = [
    "Filters",
    "RowView",
    "count_rows",
    "escape_like",
    "failure_groups",
    "get_row",
    "list_rows",
    "time_window",
]


# Rows of a cause its error text and sample targets are read from
_SAMPLE_ROWS = 20


@dataclass(frozen=True)
class Filters:
    """Which outbox rows: by status, target kind and id, error text and creation time."""

    status: str | None = None
    kind: str | None = None
    target_id: str | None = None
    error: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, **raw: str | None) -> Filters:
        """Validate filters given as text (CLI options, query parameters)."""
        status, kind = raw.get("status") or None, raw.get("kind") or None
        if status is not None and status not in set(Status):
            raise AdminError(f"unknown status {status!r}: use one of {', '.join(Status)}")
        if kind is not None and kind not in set(TargetKind):
            raise AdminError(f"unknown target kind {kind!r}: use one of {', '.join(TargetKind)}")
        since, until = time_window(raw.get("since"), raw.get("until"))
        return cls(
            status, kind, raw.get("target_id") or None, raw.get("error") or None, since, until
        )

    def where(self) -> list[ColumnElement[bool]]:
        """The filters as SQL conditions (bound parameters: no text reaches the SQL)."""
        c = outbox.c
        conditions: list[ColumnElement[bool]] = []
        if self.status:
            conditions.append(c.status == self.status)
        if self.kind:
            conditions.append(c.target_kind == self.kind)
        if self.target_id:
            conditions.append(c.target_id == self.target_id)
        if self.error:
            conditions.append(c.last_error.ilike(f"%{escape_like(self.error)}%", escape="\\"))
        if self.since:
            conditions.append(c.created_at >= self.since)
        if self.until:
            conditions.append(c.created_at <= self.until)
        return conditions

    def as_dict(self) -> dict[str, Any]:
        """The filters that are set, JSON-ready (for audit rows)."""
        return {k: str(v) for k, v in asdict(self).items() if v is not None}


def time_window(
    since_text: str | None, until_text: str | None
) -> tuple[datetime | None, datetime | None]:
    """``--since`` and ``--until`` (ISO 8601 or an age), checked to be in order."""
    since = parse_time(since_text) if since_text else None
    until = parse_time(until_text) if until_text else None
    if since and until and since > until:
        raise AdminError("--since is later than --until")
    return since, until


def escape_like(text: str) -> str:
    """``text`` for a LIKE pattern: its wildcards and the escape character taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class RowView:
    """An outbox row as admins see it."""

    id: int
    target_kind: str
    target_id: str
    event: str
    status: str
    attempts: int
    last_error: str | None
    payload: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    available_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        data = asdict(self)
        for key in ("created_at", "updated_at", "available_at"):
            data[key] = data[key].isoformat()
        return data


_COLUMNS = [
    outbox.c.id,
    outbox.c.target_kind,
    outbox.c.target_id,
    outbox.c.event,
    outbox.c.status,
    outbox.c.attempts,
    outbox.c.last_error,
    outbox.c.payload,
    outbox.c.created_at,
    outbox.c.updated_at,
    outbox.c.available_at,
]


def _view(row: Any) -> RowView:
    return RowView(**{**row._mapping, "payload": dict(row.payload or {})})


def list_rows(
    engine: Engine, filters: Filters, *, limit: int = 50, offset: int = 0
) -> list[RowView]:
    """Rows matching ``filters``, newest first, one page."""
    if limit < 1 or offset < 0:
        raise AdminError("--limit must be at least 1 and --offset at least 0")
    query = (
        select(*_COLUMNS)
        .where(*filters.where())
        .order_by(outbox.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    with engine.connect() as conn:
        return [_view(row) for row in conn.execute(query)]


def count_rows(engine: Engine, filters: Filters) -> int:
    """How many rows match ``filters``."""
    with engine.connect() as conn:
        return int(
            conn.scalar(select(func.count()).select_from(outbox).where(*filters.where())) or 0
        )


def get_row(engine: Engine, row_id: int) -> RowView:
    """One row, or :class:`AdminError` for an unknown id."""
    with engine.connect() as conn:
        row = conn.execute(select(*_COLUMNS).where(outbox.c.id == row_id)).first()
    if row is None:
        raise AdminError(f"no outbox row with id {row_id}")
    return _view(row)


def failure_groups(
    engine: Engine, until: datetime | None = None, *, with_ids: bool = False
) -> list[ErrorGroup]:
    """Failed rows (updated by ``until``) grouped by cause, largest first.

    Counted per stored cause key by the outbox's triggers (those failed by ``until``:
    through the cause index); each cause's error text and sample targets from its first
    few rows (``with_ids``: every row's id too). Rows failed without a key (an older
    worker's) are grouped as they are read.
    """
    c = outbox.c
    failed = [c.status == Status.FAILED, *([c.updated_at <= until] if until else [])]
    counts = _counts_now(failed) if until is None else _counts_by(failed)
    unkeyed = select(c.id, c.target_kind, c.target_id, c.last_error, c.updated_at).where(
        *failed, c.cause_key.is_(None)
    )
    with engine.connect() as conn:
        by_key: dict[str, list[Any]] = {}
        for key, kind, n, first, last in conn.execute(counts):
            if first is not None:  # None: counted by a commit after the lookup's snapshot
                by_key.setdefault(key, []).append((kind, n, first, last))
        groups = [_group(conn, failed, key, parts) for key, parts in by_key.items()]
        if with_ids and groups:
            ids = select(c.cause_key, c.id).where(*failed, c.cause_key.is_not(None))
            found: dict[str, list[int]] = {}
            for key, row_id in conn.execute(ids):  # the index's order: no sort
                found.setdefault(key, []).append(row_id)
            for group in groups:
                group.ids = sorted(found.get(group.key, []))
        rows = conn.execution_options(yield_per=5000).execute(unkeyed)
        old = group_failures(FailedRow(*row) for row in rows)
    if not with_ids:
        for group in old:
            group.ids = []
    return merge_groups(groups, old)


def _counts_now(failed: list[ColumnElement[bool]]) -> Select[Any]:
    """Each cause and kind's failed rows as the triggers count them, with the first and
    last time one failed (two lookups in the cause index each)."""
    c = outbox.c
    counted = failed_counts().subquery()
    same = [*failed, c.cause_key == counted.c.cause_key, c.target_kind == counted.c.target_kind]
    order = (c.cause_key, c.target_kind)

    def seen(at: ColumnElement[Any]) -> Any:
        return select(c.updated_at).where(*same).order_by(*order, at).limit(1).scalar_subquery()

    return select(
        counted.c.cause_key,
        counted.c.target_kind,
        counted.c.rows,
        seen(c.updated_at),
        seen(c.updated_at.desc()),
    )


def _counts_by(failed: list[ColumnElement[bool]]) -> Select[Any]:
    """Each cause and kind's failed rows counted from the rows (those failed by a time)."""
    c = outbox.c
    return (
        select(
            c.cause_key, c.target_kind, func.count(), func.min(c.updated_at), func.max(c.updated_at)
        )
        .where(*failed, c.cause_key.is_not(None))
        .group_by(c.cause_key, c.target_kind)
    )


def _group(
    conn: Connection, failed: list[ColumnElement[bool]], key: str, parts: list[Any]
) -> ErrorGroup:
    """The group of cause ``key`` from its counts by kind, its error text and a few
    targets read from its first rows in the index."""
    c = outbox.c
    first_rows = (
        select(c.target_kind, c.target_id, c.last_error)
        .where(*failed, c.cause_key == key)
        .order_by(c.cause_key, c.target_kind, c.updated_at, c.id)
        .limit(_SAMPLE_ROWS)
    )
    rows = conn.execute(first_rows).all()
    group = ErrorGroup(cause_of(rows[0].last_error if rows else None))
    group.count = sum(n for _, n, _, _ in parts)
    group.kinds = {kind for kind, _, _, _ in parts}
    group.first_seen = min(first for _, _, first, _ in parts)
    group.last_seen = max(last for _, _, _, last in parts)
    for row in rows:
        target = f"{row.target_kind}:{row.target_id}"
        if len(group.samples) < SAMPLES and target not in group.samples:
            group.samples.append(target)
    return group
