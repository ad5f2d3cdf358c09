"""Failed rows counted per cause key and kind, kept by the database itself; the rollups'
closed minutes merged.

``stream_outbox_failed`` holds how many rows are failed for each cause key and target kind.
Row triggers on the outbox keep it: they fire only when a row becomes failed or stops
being failed (their ``WHEN`` clauses leave every other insert and update alone, the
app's among them), whatever wrote the change: a worker, a replay, a purge or a statement
typed by hand. The error groups and the failed counts then read a few dozen rows
instead of counting the failed rows, however many a failure storm left.

The table is filled here from the failed rows, under a lock that holds writers back
for that one count.

The per-minute rollups are written in up to 8 shards a minute; the relay merges a closed
minute's shards into shard 0 (``ix_stream_outbox_settled_sharded`` finds those not merged
yet), so a week of history is a row per minute, status and kind to sum.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_SHARDED = sa.text("shard <> 0")
_SHARDS = 8  # as the rollups: workers failing rows at once seldom wait on one row

_PG_FUNCTION = f"""
CREATE FUNCTION stream_outbox_count_failed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.status = 'failed' AND OLD.cause_key IS NOT NULL THEN
        INSERT INTO stream_outbox_failed (cause_key, target_kind, shard, rows)
        VALUES (OLD.cause_key, OLD.target_kind, pg_backend_pid() % {_SHARDS}, -1)
        ON CONFLICT (cause_key, target_kind, shard)
        DO UPDATE SET rows = stream_outbox_failed.rows - 1;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status = 'failed' AND NEW.cause_key IS NOT NULL THEN
        INSERT INTO stream_outbox_failed (cause_key, target_kind, shard, rows)
        VALUES (NEW.cause_key, NEW.target_kind, pg_backend_pid() % {_SHARDS}, 1)
        ON CONFLICT (cause_key, target_kind, shard)
        DO UPDATE SET rows = stream_outbox_failed.rows + 1;
    END IF;
    RETURN NULL;
END
$$
"""
_CHANGED = (
    "(OLD.status = 'failed' OR NEW.status = 'failed') AND "
    "(OLD.status IS DISTINCT FROM NEW.status OR OLD.cause_key IS DISTINCT FROM NEW.cause_key)"
)
_PG_TRIGGERS = (
    "CREATE TRIGGER stream_outbox_failed_insert AFTER INSERT ON stream_outbox FOR EACH ROW"
    " WHEN (NEW.status = 'failed') EXECUTE FUNCTION stream_outbox_count_failed()",
    "CREATE TRIGGER stream_outbox_failed_update AFTER UPDATE OF status, cause_key"
    f" ON stream_outbox FOR EACH ROW WHEN ({_CHANGED})"
    " EXECUTE FUNCTION stream_outbox_count_failed()",
    "CREATE TRIGGER stream_outbox_failed_delete AFTER DELETE ON stream_outbox FOR EACH ROW"
    " WHEN (OLD.status = 'failed') EXECUTE FUNCTION stream_outbox_count_failed()",
)


def _sqlite_add(row: str, sign: str) -> str:
    """SQLite's trigger step: count ``row`` (OLD or NEW) in or out, when it is failed."""
    return (
        "INSERT INTO stream_outbox_failed (cause_key, target_kind, shard, rows)"
        f" SELECT {row}.cause_key, {row}.target_kind, 0, {sign}1"
        f" WHERE {row}.status = 'failed' AND {row}.cause_key IS NOT NULL"
        " ON CONFLICT (cause_key, target_kind, shard)"
        f" DO UPDATE SET rows = rows {sign} 1;"
    )


_SQLITE_TRIGGERS = (
    "CREATE TRIGGER stream_outbox_failed_insert AFTER INSERT ON stream_outbox"
    f" WHEN NEW.status = 'failed' BEGIN {_sqlite_add('NEW', '+')} END",
    "CREATE TRIGGER stream_outbox_failed_update AFTER UPDATE OF status, cause_key"
    f" ON stream_outbox WHEN {_CHANGED}"
    f" BEGIN {_sqlite_add('OLD', '-')} {_sqlite_add('NEW', '+')} END",
    "CREATE TRIGGER stream_outbox_failed_delete AFTER DELETE ON stream_outbox"
    f" WHEN OLD.status = 'failed' BEGIN {_sqlite_add('OLD', '-')} END",
)
_TRIGGER_NAMES = (
    "stream_outbox_failed_insert",
    "stream_outbox_failed_update",
    "stream_outbox_failed_delete",
)
_COUNT_FROM_ROWS = """
INSERT INTO stream_outbox_failed (cause_key, target_kind, shard, rows)
SELECT cause_key, target_kind, 0, count(*) FROM stream_outbox
WHERE status = 'failed' AND cause_key IS NOT NULL GROUP BY cause_key, target_kind
"""


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:  # no row fails or is replayed between the triggers and the count
        op.execute("LOCK TABLE stream_outbox IN SHARE ROW EXCLUSIVE MODE")
    op.create_table(
        "stream_outbox_failed",
        sa.Column("cause_key", sa.String(12), nullable=False),
        sa.Column("target_kind", sa.String(32), nullable=False),
        sa.Column("shard", sa.SmallInteger, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint(
            "cause_key", "target_kind", "shard", name="pk_stream_outbox_failed"
        ),
    )
    op.create_index(
        "ix_stream_outbox_settled_sharded",
        "stream_outbox_settled",
        ["minute"],
        postgresql_where=_SHARDED,
        sqlite_where=_SHARDED,
    )
    if postgres:
        op.execute(_PG_FUNCTION)
    for trigger in _PG_TRIGGERS if postgres else _SQLITE_TRIGGERS:
        op.execute(trigger)
    op.execute(_COUNT_FROM_ROWS)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in _TRIGGER_NAMES:
        op.execute(f"DROP TRIGGER {name} ON stream_outbox" if postgres else f"DROP TRIGGER {name}")
    if postgres:
        op.execute("DROP FUNCTION stream_outbox_count_failed()")
    op.drop_table("stream_outbox_failed")
    op.drop_index("ix_stream_outbox_settled_sharded", table_name="stream_outbox_settled")
