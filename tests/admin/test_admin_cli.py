"""`stream-outbox admin` against real PostgreSQL (and the emulator for show and verify)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import outbox
from stream_outbox.worker.errors import AdminError
from tests.support.cli import as_json
from tests.support.outbox import add_row, audits, statuses_by_id

Cli = Callable[..., Result]


def test_stats_counts_by_status_and_kind(cli: Cli, seeded: dict[str, int]) -> None:
    figures = as_json(cli("admin", "stats", "--json"))
    assert figures["by_status"] == {"pending": 1, "dispatched": 0, "done": 2, "failed": 3}
    assert figures["by_status_and_kind"]["failed"] == {"conversation": 1, "user": 1, "message": 1}
    assert figures["failed_last_hour"] == 3
    assert figures["oldest_pending_age_seconds"] >= 0
    assert "oldest pending" in cli("admin", "stats").stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), ["failed_msg", "failed_user", "failed_conv", "pending", "done_new", "done_old"]),
        (("--status", "failed"), ["failed_msg", "failed_user", "failed_conv"]),
        (("--kind", "conversation"), ["failed_conv", "pending"]),
        (("--target-id", "u3"), ["failed_user"]),
        (("--error", "code 4"), ["failed_msg", "failed_conv"]),
        (("--error", "100%_"), ["failed_msg"]),  # LIKE wildcards are literal
        (("--since", "2h"), ["failed_msg", "failed_conv", "pending", "done_new"]),
        (("--until", "2h", "--since", "10d"), ["failed_user"]),
        (("--status", "failed", "--kind", "user"), ["failed_user"]),
    ],
)
def test_list_filters_newest_first(
    cli: Cli, seeded: dict[str, int], args: tuple[str, ...], expected: list[str]
) -> None:
    listing = as_json(cli("admin", "list", "--json", *args))
    assert [row["id"] for row in listing["rows"]] == [seeded[name] for name in expected]
    assert listing["total"] == len(expected)


def test_list_pages(cli: Cli, seeded: dict[str, int]) -> None:
    first = as_json(cli("admin", "list", "--json", "--limit", "4"))
    second = as_json(cli("admin", "list", "--json", "--limit", "4", "--page", "2"))
    assert len(first["rows"]) == 4 and len(second["rows"]) == 2
    assert first["total"] == second["total"] == 6
    assert "page 1: 4 of 6 rows" in cli("admin", "list", "--limit", "4").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--status", "lost"), "unknown status 'lost'"),
        (("--kind", "event"), "unknown target kind 'event'"),
        (("--since", "yesterday"), "'yesterday' is not a time"),
        (("--since", "1h", "--until", "2h"), "--since is later than --until"),
        (("--page", "0"), "--page must be at least 1"),
        (("--status", "failed' OR 1=1 --"), "unknown status"),
    ],
)
def test_list_rejects_bad_filters_in_one_line(
    cli: Cli, seeded: dict[str, int], args: tuple[str, ...], message: str
) -> None:
    result = cli("admin", "list", *args)
    assert isinstance(result.exception, AdminError)
    assert message in str(result.exception)
    assert "\n" not in str(result.exception)


def test_error_filter_cannot_inject_sql(cli: Cli, seeded: dict[str, int]) -> None:
    listing = as_json(cli("admin", "list", "--json", "--error", "x' OR '1'='1"))
    assert listing["rows"] == []


def test_show_prints_row_payload_audit_and_both_sides(
    cli: Cli, session_factory: sessionmaker[Session], clean_db: Engine
) -> None:
    from stream_outbox.app_hooks.reference import Profile, User

    with session_factory() as session, session.begin():
        user = User(email="ann@example.com", profile=Profile(full_name="Ann"))
        session.add(user)
    with clean_db.connect() as conn:
        row_id = conn.scalar(select(outbox.c.id).where(outbox.c.target_id == str(user.id)))
    assert row_id is not None
    detail = as_json(cli("admin", "show", str(row_id), "--json"))
    assert detail["row"]["target_id"] == str(user.id)
    assert detail["target"]["database"] == {"id": str(user.id), "name": "Ann"}
    assert detail["target"]["stream"] == "absent"  # not synced: the emulator is empty
    assert "database wants" in cli("admin", "show", str(row_id)).stdout


def test_show_of_an_unknown_id_is_an_error(cli: Cli, seeded: dict[str, int]) -> None:
    result = cli("admin", "show", "999999")
    assert str(result.exception) == "no outbox row with id 999999"


def test_replay_by_ids_makes_failed_rows_pending_with_an_audit_row(
    cli: Cli, seeded: dict[str, int], clean_db: Engine
) -> None:
    ids = [seeded["failed_conv"], seeded["failed_user"]]
    done = as_json(cli("admin", "replay", *map(str, ids), "--actor", "ops-ann", "--json"))
    assert done["ids"] == sorted(ids)
    now = statuses_by_id(clean_db)
    assert now[seeded["failed_conv"]] == now[seeded["failed_user"]] == "pending"
    assert now[seeded["failed_msg"]] == "failed"
    [entry] = audits(clean_db)
    assert (entry["actor"], entry["action"], entry["row_count"]) == ("ops-ann", "replay", 2)
    assert entry["detail"]["ids"] == sorted(ids)


def test_replay_of_a_row_that_is_not_failed_changes_nothing(
    cli: Cli, seeded: dict[str, int], clean_db: Engine
) -> None:
    before = statuses_by_id(clean_db)
    result = cli("admin", "replay", str(seeded["failed_conv"]), str(seeded["done_new"]))
    assert "only failed rows can be replayed" in str(result.exception)
    assert f"{seeded['done_new']} (done)" in str(result.exception)
    unknown = cli("admin", "replay", "999999")
    assert str(unknown.exception) == "no outbox row with id 999999"
    assert statuses_by_id(clean_db) == before
    assert audits(clean_db) == []


def test_replay_all_failed_by_filter_with_dry_run_first(
    cli: Cli, seeded: dict[str, int], clean_db: Engine
) -> None:
    before = statuses_by_id(clean_db)
    dry = as_json(
        cli("admin", "replay", "--all-failed", "--error", "code 4", "--dry-run", "--json")
    )
    assert dry["ids"] == [seeded["failed_conv"], seeded["failed_msg"]]
    assert statuses_by_id(clean_db) == before and audits(clean_db) == []
    done = as_json(cli("admin", "replay", "--all-failed", "--error", "code 4", "--json"))
    assert done["count"] == 2
    assert statuses_by_id(clean_db)[seeded["failed_user"]] == "failed"
    assert audits(clean_db)[0]["detail"]["filters"] == {"status": "failed", "error": "code 4"}


def test_replay_is_paced(cli: Cli, clean_db: Engine) -> None:
    ids = [add_row(clean_db, status="failed", target_id=f"u{n}") for n in range(10)]
    as_json(cli("admin", "replay", "--all-failed", "--per-second", "5", "--json"))
    with clean_db.connect() as conn:
        due = [
            row.available_at
            for row in conn.execute(
                select(outbox.c.available_at).where(outbox.c.id.in_(ids)).order_by(outbox.c.id)
            )
        ]
    spread = (due[-1] - due[0]).total_seconds()
    assert 1.7 <= spread <= 1.9  # 10 rows at 5 per second: due over 1.8 s


def test_replay_needs_ids_or_all_failed(cli: Cli, seeded: dict[str, int]) -> None:
    assert "give row ids" in str(cli("admin", "replay").exception)
    both = cli("admin", "replay", "1", "--all-failed")
    assert "not both" in str(both.exception)


def test_purge_deletes_old_done_rows_only_and_audits(
    cli: Cli, seeded: dict[str, int], clean_db: Engine
) -> None:
    assert as_json(cli("admin", "purge", "--older-than", "7d", "--json"))["deleted"] == 1
    left = statuses_by_id(clean_db)
    assert seeded["done_old"] not in left and seeded["done_new"] in left
    assert audits(clean_db)[-1]["action"] == "purge"
    assert as_json(cli("admin", "purge", "--json"))["deleted"] == 0  # retention default 7d
    bad = cli("admin", "purge", "--older-than", "soon")
    assert "'soon' is not a duration" in str(bad.exception)


def test_purge_works_in_batches(cli: Cli, clean_db: Engine) -> None:
    old = {"status": "done", "updated_at": datetime(2020, 1, 1, tzinfo=UTC)}
    for n in range(7):
        add_row(clean_db, target_id=f"u{n}", **old)
    result = as_json(cli("admin", "purge", "--older-than", "1d", "--batch", "3", "--json"))
    assert result["deleted"] == 7


def test_resync_enqueues_every_user_and_conversation_and_resumes(
    cli: Cli, session_factory: sessionmaker[Session], clean_db: Engine
) -> None:
    from stream_outbox.app_hooks.reference import Conversation, User

    plain = sessionmaker(clean_db)  # raw data the hooks never saw
    with plain() as session, session.begin():
        session.add_all([User(email=f"r{n}@example.com") for n in range(5)])
        session.add_all([Conversation() for _ in range(3)])
    counts = as_json(cli("admin", "resync", "--json"))["enqueued"]
    assert counts == {"user": 5, "conversation": 3}
    with clean_db.connect() as conn:
        events = list(conn.scalars(select(outbox.c.event)))
    assert events.count("resync") == 8
    run = audits(clean_db)[-1]
    assert run["action"] == "resync" and run["detail"]["finished"] is True
    again = as_json(cli("admin", "resync", "--kind", "user", "--json"))["enqueued"]
    assert again == {"user": 5}
    assert "unknown" not in cli("admin", "resync", "--kind", "user").stdout


def test_resync_rejects_an_unknown_kind(cli: Cli, seeded: dict[str, int]) -> None:
    assert "cannot resync 'message'" in str(cli("admin", "resync", "--kind", "message").exception)


def test_verify_reports_differences_and_exits_non_zero(
    cli: Cli, session_factory: sessionmaker[Session]
) -> None:
    from stream_outbox.app_hooks.reference import User

    with session_factory() as session, session.begin():
        session.add(User(email="v@example.com"))
    result = cli("admin", "verify", "--json")
    assert result.exit_code == 1
    report = as_json_any(result)
    assert report["count"] == 1
    assert report["differences"][0]["what"] == "presence"


def as_json_any(result: Result) -> dict[str, object]:
    import json

    return dict(json.loads(result.stdout))


@pytest.mark.slow
def test_admin_errors_are_one_line_with_exit_status_2(database_url: str, clean_db: Engine) -> None:
    binary = Path(sys.executable).parent / "stream-outbox"
    env = {**os.environ, "DATABASE_URL": database_url}
    out = subprocess.run(
        [str(binary), "admin", "list", "--since", "someday"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: 'someday' is not a time: use ISO 8601 (2026-11-25T10:00) or an age (2h)"
    ]


def test_an_interrupted_resync_resumes_after_the_last_id_written(clean_db: Engine) -> None:
    from stream_outbox.app_hooks.reference import REFERENCE_BINDING, User
    from stream_outbox.worker.operations.resync import resync

    with sessionmaker(clean_db)() as session, session.begin():
        session.add_all([User(email=f"i{n}@example.com") for n in range(7)])
    calls = []

    def crash_after_two_batches(kind: str, count: int) -> None:
        calls.append(count)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        resync(
            clean_db,
            REFERENCE_BINDING,
            actor="t",
            kinds=["user"],
            batch=2,
            progress=crash_after_two_batches,
        )
    counts = resync(clean_db, REFERENCE_BINDING, actor="t", kinds=["user"], batch=2)
    assert counts == {"user": 7}
    with clean_db.connect() as conn:
        written = list(conn.scalars(select(outbox.c.target_id)))
    assert len(written) == len(set(written)) == 7  # nothing twice, nothing missed


def test_stats_sums_stream_calls_and_429s_from_workers_metrics(
    cli: Cli, seeded: dict[str, int]
) -> None:
    import socket

    from prometheus_client import start_http_server

    from stream_outbox.worker import metrics

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server, thread = start_http_server(port, addr="127.0.0.1")
    try:
        metrics.STREAM_CALLS.labels("UpdateUsers", "429").inc(2)
        metrics.STREAM_CALLS.labels("UpdateUsers", "200").inc(5)
        url = f"http://127.0.0.1:{port}/metrics"
        dead = "http://127.0.0.1:9/metrics"
        figures = as_json(
            cli("admin", "stats", "--json", "--metrics-url", url, "--metrics-url", dead)
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert figures["stream"]["rate_limited"] >= 2
    assert figures["stream"]["calls"] >= 7
    assert figures["stream"]["unreachable"] == [dead]
    assert "Stream calls: unknown" in cli("admin", "stats").stdout
