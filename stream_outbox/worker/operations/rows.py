"""Admin operations on the outbox: inspect, replay, purge, resync (for the CLI and dashboard).

Every operation that changes rows writes an audit row (who, when, what, how many)
in the same transaction. Bad input raises :class:`AdminError` before anything changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update
from sqlalchemy.sql.elements import ColumnElement

from stream_outbox.app_hooks.outbox import Status, TargetKind, audit, outbox
from stream_outbox.worker import settings
from stream_outbox.worker.errors import AdminError
from stream_outbox.worker.operations.error_groups import (
    ErrorGroup,
    FailedRow,
    find_group,
    group_failures,
)
from stream_outbox.worker.operations.resync import check_resync_kinds, resync

__all__ = [
    "AdminError",
    "Filters",
    "RowView",
    "audit_of",
    "check_resync_kinds",
    "count_rows",
    "failure_groups",
    "find_group",
    "get_row",
    "list_rows",
    "parse_duration",
    "parse_time",
    "purge",
    "record",
    "replay",
    "replay_group",
    "resync",
    "stats",
]

_AUDIT_IDS_MAX = 1000


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"1w"`` (or ``"1h30m"``) as a timedelta."""
    try:
        return settings.parse_duration(text)
    except ValueError as exc:
        raise AdminError(str(exc)) from None


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC when no zone is given) or a duration ago (``"2h"``)."""
    now = now or datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        try:
            return now - parse_duration(text)
        except AdminError:
            raise AdminError(
                f"{text!r} is not a time: use ISO 8601 (2026-11-25T10:00) or an age (2h)"
            ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
        since_text, until_text = raw.get("since"), raw.get("until")
        since = parse_time(since_text) if since_text else None
        until = parse_time(until_text) if until_text else None
        if since and until and since > until:
            raise AdminError("--since is later than --until")
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
            conditions.append(c.last_error.ilike(f"%{_escape_like(self.error)}%", escape="\\"))
        if self.since:
            conditions.append(c.created_at >= self.since)
        if self.until:
            conditions.append(c.created_at <= self.until)
        return conditions

    def as_dict(self) -> dict[str, Any]:
        """The filters that are set, JSON-ready (for audit rows)."""
        return {k: str(v) for k, v in asdict(self).items() if v is not None}


def _escape_like(text: str) -> str:
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


def list_rows(engine: Engine, filters: Filters, limit: int = 50, offset: int = 0) -> list[RowView]:
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


def audit_of(engine: Engine, row_id: int) -> list[dict[str, Any]]:
    """Audit entries that name this row (newest first)."""
    with engine.connect() as conn:
        rows = conn.execute(select(audit).order_by(audit.c.id.desc()).limit(500)).all()
    return [
        {**row._mapping, "at": row.at.isoformat()}
        for row in rows
        if row_id in (row.detail or {}).get("ids", [])
    ]


def stats(engine: Engine) -> dict[str, Any]:
    """Counts by status and kind, lag, failures in the last hour."""
    c = outbox.c
    hour_ago = func.now() - timedelta(hours=1)
    with engine.connect() as conn:
        by = conn.execute(
            select(c.status, c.target_kind, func.count()).group_by(c.status, c.target_kind)
        ).all()
        oldest = conn.scalar(select(func.min(c.created_at)).where(c.status == Status.PENDING))
        recent = conn.scalar(
            select(func.count()).where(c.status == Status.FAILED, c.updated_at >= hour_ago)
        )
        now = conn.scalar(select(func.now()))
    counts: dict[str, dict[str, int]] = {status.value: {} for status in Status}
    for status, kind, n in by:
        counts[status][kind] = n
    lag = (now - oldest).total_seconds() if oldest is not None and now is not None else 0.0
    return {
        "by_status": {status: sum(kinds.values()) for status, kinds in counts.items()},
        "by_status_and_kind": counts,
        "oldest_pending_age_seconds": round(max(lag, 0.0), 3),
        "failed_last_hour": int(recent or 0),
    }


def failure_groups(engine: Engine, until: datetime | None = None) -> list[ErrorGroup]:
    """Failed rows (updated by ``until``) grouped by cause, largest first: one indexed read."""
    c = outbox.c
    query = select(c.id, c.target_kind, c.target_id, c.last_error, c.updated_at).where(
        c.status == Status.FAILED, *([c.updated_at <= until] if until else [])
    )
    with engine.connect() as conn:
        rows = conn.execution_options(yield_per=5000).execute(query)
        return group_failures(FailedRow(*row) for row in rows)


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


def _audit(conn: Connection, actor: str, action: str, count: int, detail: dict[str, Any]) -> None:
    conn.execute(insert(audit).values(actor=actor, action=action, row_count=count, detail=detail))


def record(engine: Engine, *, actor: str, action: str, count: int, detail: dict[str, Any]) -> None:
    """Write one audit row (who, what, how many) for an operation outside the outbox."""
    with engine.begin() as conn:
        _audit(conn, actor, action, count, detail)


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
        _audit(conn, actor, "replay", len(chosen), detail)
    return chosen


def replay_group(
    engine: Engine, *, actor: str, key: str, until: datetime | None = None, per_second: float = 50
) -> list[int]:
    """Replay the failed rows of one cause (updated by ``until``), paced and audited."""
    group = find_group(failure_groups(engine, until), key)
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


def purge(engine: Engine, *, actor: str, older_than: timedelta, batch: int = 5000) -> int:
    """Delete done rows older than ``older_than`` in batches (short transactions)."""
    if batch < 1:
        raise AdminError("--batch must be at least 1")
    cutoff = datetime.now(UTC) - older_than
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
        _audit(conn, actor, "purge", total, {"older_than": str(older_than)})
    return total
