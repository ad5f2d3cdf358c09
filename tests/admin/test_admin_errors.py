"""`stream-outbox admin errors`: failed rows grouped by cause, and replaying one cause."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from click.testing import Result
from sqlalchemy import Engine

from stream_outbox.worker.errors import AdminError
from stream_outbox.worker.operations.replay import replay_group
from stream_outbox.worker.operations.rows import failure_groups
from tests.support.cli import as_json
from tests.support.outbox import add_row, audits, statuses_by_id

Cli = Callable[..., Result]
TOO_LONG = "UpdateUsers HTTP 400 code 4: user {} name is too long"
LIMITED = "after 5 attempts: GetOrCreateChannel HTTP 429 code 9: Too many requests"
NOW = datetime.now(UTC)


def failures(engine: Engine) -> dict[str, list[int]]:
    """Three rows of one cause, two of another, a done row that once failed the same way."""
    too_long = [
        add_row(
            engine,
            status="failed",
            target_id=f"u{n}",
            last_error=TOO_LONG.format(n),
            updated_at=NOW - timedelta(minutes=n),
        )
        for n in (1, 2, 3)
    ]
    limited = [
        add_row(
            engine,
            status="failed",
            target_kind="conversation",
            target_id=f"c{n}",
            last_error=LIMITED,
        )
        for n in (1, 2)
    ]
    done = add_row(engine, status="done", last_error=TOO_LONG.format(9))
    return {"too_long": too_long, "limited": limited, "done": [done]}


def test_errors_groups_failed_rows_by_cause(cli: Cli, clean_db: Engine) -> None:
    ids = failures(clean_db)
    first, second = as_json(cli("admin", "errors", "--json"))["groups"]
    assert first["cause"] == "UpdateUsers HTTP 400 code 4: user <n> name is too long"
    assert (first["count"], first["ids"], first["kinds"]) == (3, ids["too_long"], ["user"])
    assert (first["endpoint"], first["status"], first["code"]) == ("UpdateUsers", 400, "4")
    assert sorted(first["sample_targets"]) == ["user:u1", "user:u2", "user:u3"]
    assert first["first_seen"] < first["last_seen"]
    assert second["cause"] == "GetOrCreateChannel HTTP 429 code 9: Too many requests"
    assert (second["count"], second["ids"], second["kinds"]) == (
        2,
        ids["limited"],
        ["conversation"],
    )
    table = cli("admin", "errors").stdout
    assert first["key"] in table and second["key"] in table and "failed rows by cause" in table


def test_errors_replay_asks_then_replays_one_cause_paced_and_audited(
    cli: Cli, clean_db: Engine
) -> None:
    ids = failures(clean_db)
    [_, limited] = as_json(cli("admin", "errors", "--json"))["groups"]
    declined = cli("admin", "errors", "--replay", limited["key"], input="n\n")
    assert (
        declined.exit_code == 1 and "Replay 2 failed rows of GetOrCreateChannel" in declined.stdout
    )
    assert audits(clean_db) == []
    done = cli("admin", "errors", "--replay", limited["key"], "--actor", "ops", input="y\n")
    assert done.exit_code == 0, done.output
    assert "replayed 2 rows" in done.stdout
    now = statuses_by_id(clean_db)
    assert [now[i] for i in ids["limited"]] == ["pending", "pending"]
    assert [now[i] for i in ids["too_long"]] == ["failed"] * 3
    [entry] = audits(clean_db)
    assert (entry["actor"], entry["action"], entry["row_count"]) == ("ops", "replay", 2)
    assert entry["detail"]["cause"] == limited["cause"]
    assert entry["detail"]["ids"] == ids["limited"]


def test_errors_without_failures(cli: Cli, clean_db: Engine) -> None:
    add_row(clean_db, status="done")
    assert as_json(cli("admin", "errors", "--json")) == {"groups": []}
    assert "no failed rows" in cli("admin", "errors").stdout


def test_errors_replay_of_an_unknown_cause_is_one_line(cli: Cli, clean_db: Engine) -> None:
    failures(clean_db)
    result = cli("admin", "errors", "--replay", "0123456789ab", "--yes")
    assert isinstance(result.exception, AdminError)
    assert "no failed rows of cause '0123456789ab'" in str(result.exception)
    assert audits(clean_db) == []


def test_replay_group_leaves_rows_that_failed_after_the_confirmation(clean_db: Engine) -> None:
    # Given a cause seen up to a time, and a row of the same cause failing later
    ids = failures(clean_db)
    [group, _] = failure_groups(clean_db)
    later = add_row(
        clean_db,
        status="failed",
        last_error=TOO_LONG.format(8),
        updated_at=NOW + timedelta(minutes=5),
    )
    # When the group is replayed as far as its last seen time
    chosen = replay_group(clean_db, actor="t", key=group.key, until=group.last_seen)
    # Then only the rows the operator saw go back to pending
    assert chosen == ids["too_long"]
    assert statuses_by_id(clean_db)[later] == "failed"
    assert [g.ids for g in failure_groups(clean_db, with_ids=True)] == [ids["limited"], [later]]
