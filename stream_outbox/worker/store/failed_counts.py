"""Failed rows per cause key and target kind, as the outbox's triggers count them
(``stream_outbox_failed``, migration 0010): a few dozen rows to read, however many rows
failed. Rows failed without a cause key (by a worker older than the key) are not in it."""

from __future__ import annotations

from sqlalchemy import BigInteger, Select, cast, func, select

from stream_outbox.app_hooks.outbox import failed_per_cause

__all__ = ["failed_counts"]


def failed_counts() -> Select[tuple[str, str, int]]:
    """``(cause_key, target_kind, rows)`` of every cause and kind with failed rows now."""
    c = failed_per_cause.c
    total = func.sum(c.rows)
    return (
        select(c.cause_key, c.target_kind, cast(total, BigInteger).label("rows"))
        .group_by(c.cause_key, c.target_kind)
        .having(total > 0)
    )
