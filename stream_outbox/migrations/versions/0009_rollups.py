"""Operators' views that do not grow with history: per-minute rollups of settled rows, and
each failed row's cause key.

``stream_outbox_settled`` counts the rows settled each minute by status (done, failed) and kind,
with the earliest creation among them (the lag series reads it), in a few shards per
minute so that workers settling at once do not wait on one row. The repository writes it
in the statement that settles the rows. Rows settled before this migration are counted
into it here (one pass over the table, once).

``cause_key`` names the cause a failed row's error reads as (``error_groups.cause_of``),
stored when the row fails and indexed for failed rows only, so error groups are counted
in SQL from the failed rows alone; rows failed before this migration get theirs here, in
batches. The column and the partial indexes leave the app's inserts as they were.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_FAILED = sa.text("status = 'failed'")
_UNKEYED = sa.text("status = 'failed' AND cause_key IS NULL")
_BATCH = 5000


def upgrade() -> None:
    op.create_table(
        "stream_outbox_settled",
        sa.Column("minute", _TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("target_kind", sa.String(32), nullable=False),
        sa.Column("shard", sa.SmallInteger, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("first_created", _TS, nullable=False),
        sa.PrimaryKeyConstraint(
            "minute", "status", "target_kind", "shard", name="pk_stream_outbox_settled"
        ),
    )
    # Nullable, no default: PostgreSQL adds it without rewriting the table.
    op.add_column("stream_outbox", sa.Column("cause_key", sa.String(12)))
    op.create_index(
        "ix_stream_outbox_cause",
        "stream_outbox",
        ["cause_key", "target_kind", "updated_at", "id"],
        postgresql_where=_FAILED,
        sqlite_where=_FAILED,
    )
    bind = op.get_bind()
    _backfill_cause_keys(bind)
    # Made after the backfill: it holds no row then, and only an older worker's failures
    # after (the planner misjudges ``cause_key IS NULL`` among failed rows without it).
    op.create_index(
        "ix_stream_outbox_unkeyed",
        "stream_outbox",
        ["id"],
        postgresql_where=_UNKEYED,
        sqlite_where=_UNKEYED,
    )
    if bind.dialect.name == "postgresql":
        from stream_outbox.worker.store.rollups import COUNT_FROM_ROWS

        bind.execute(COUNT_FROM_ROWS)


def _backfill_cause_keys(bind: sa.Connection) -> None:
    """Each failed row's cause key: one pass over the failed rows' partial index, stored
    a batch at a time as they stream in."""
    from stream_outbox.worker.error_groups import cause_of

    pick = sa.text("SELECT id, last_error FROM stream_outbox WHERE status = 'failed'")
    store = sa.text("UPDATE stream_outbox SET cause_key = :key WHERE id = :id")
    for rows in bind.execute(pick.execution_options(yield_per=_BATCH)).partitions():
        bind.execute(store, [{"id": r.id, "key": cause_of(r.last_error).key} for r in rows])


def downgrade() -> None:
    op.drop_index("ix_stream_outbox_unkeyed", table_name="stream_outbox")
    op.drop_index("ix_stream_outbox_cause", table_name="stream_outbox")
    op.drop_column("stream_outbox", "cause_key")
    op.drop_table("stream_outbox_settled")
