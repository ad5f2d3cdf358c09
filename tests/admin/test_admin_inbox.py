"""``stream-outbox admin inbox list|show|replay`` on real PostgreSQL: the inbound side's
rows seen and replayed like the outbox's, audited."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import Result
from sqlalchemy import Engine, select, update

from stream_outbox.app_hooks.outbox import inbox
from stream_outbox.worker.errors import AdminError
from stream_outbox.worker.inbound.inbox import Inbox
from stream_outbox.worker.inbound.inbox_event import event_from
from tests.support.cli import as_json
from tests.support.inbound import message_event
from tests.support.outbox import audits

Cli = Callable[..., Result]


@pytest.fixture()
def rows(clean_db: Engine) -> dict[str, int]:
    """Four inbox rows: pending, done, failed, and an unknown type (ignored)."""
    events = [
        message_event("messaging:a", "m1"),
        message_event("messaging:a", "m2", event_type="message.updated"),
        message_event("messaging:b", "m3"),
        {**message_event("messaging:b", "m4"), "type": "reaction.new"},
    ]
    Inbox(clean_db).store_many([event_from(e, f"w{n}") for n, e in enumerate(events)])
    with clean_db.begin() as conn:
        ids = list(conn.scalars(select(inbox.c.id).order_by(inbox.c.id)))
        conn.execute(update(inbox).where(inbox.c.id == ids[1]).values(status="done"))
        conn.execute(
            update(inbox)
            .where(inbox.c.id == ids[2])
            .values(status="failed", attempts=3, last_error="IntegrityError: no such user")
        )
    return dict(zip(["pending", "done", "failed", "ignored"], ids, strict=True))


def statuses(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return {
            row_id: status for row_id, status in conn.execute(select(inbox.c.id, inbox.c.status))
        }


def test_list_filters_newest_first(cli: Cli, rows: dict[str, int]) -> None:
    listing = as_json(cli("admin", "inbox", "list", "--json"))
    assert listing["total"] == 4
    assert [r["id"] for r in listing["rows"]] == sorted(rows.values(), reverse=True)
    failed = as_json(cli("admin", "inbox", "list", "--json", "--status", "failed"))
    assert [r["id"] for r in failed["rows"]] == [rows["failed"]]
    by_channel = as_json(cli("admin", "inbox", "list", "--json", "--cid", "messaging:a"))
    assert {r["message_id"] for r in by_channel["rows"]} == {"m1", "m2"}
    by_type = as_json(cli("admin", "inbox", "list", "--json", "--type", "reaction.new"))
    assert [r["status"] for r in by_type["rows"]] == ["ignored"]
    by_error = as_json(cli("admin", "inbox", "list", "--json", "--error", "no such USER"))
    assert [r["id"] for r in by_error["rows"]] == [rows["failed"]]
    table = cli("admin", "inbox", "list")
    assert table.exit_code == 0 and "page 1: 4 of 4 inbox rows" in table.stdout


def test_list_refuses_an_unknown_status_in_one_line(cli: Cli, rows: dict[str, int]) -> None:
    result = cli("admin", "inbox", "list", "--status", "dispatched")
    assert isinstance(result.exception, AdminError)
    assert str(result.exception) == (
        "unknown status 'dispatched': use one of pending, done, failed, ignored"
    )


def test_show_prints_the_event_as_stream_sent_it(cli: Cli, rows: dict[str, int]) -> None:
    shown = as_json(cli("admin", "inbox", "show", str(rows["failed"]), "--json"))["row"]
    assert shown["payload"]["message"]["id"] == "m3"
    assert (shown["status"], shown["attempts"]) == ("failed", 3)
    assert shown["last_error"] == "IntegrityError: no such user"
    missing = cli("admin", "inbox", "show", "999999")
    assert str(missing.exception) == "no inbox row with id 999999"


def test_replay_by_id_and_by_filter_sends_rows_back_to_pending_audited(
    cli: Cli, rows: dict[str, int], clean_db: Engine
) -> None:
    # A pending or done row cannot be replayed: nothing changes
    refused = cli("admin", "inbox", "replay", str(rows["done"]), str(rows["failed"]))
    assert isinstance(refused.exception, AdminError)
    assert str(refused.exception) == (
        f"only failed or ignored rows can be replayed: {rows['done']} (done)"
    )
    # A dry run by filter names the failed row and changes nothing
    dry = as_json(cli("admin", "inbox", "replay", "--all-failed", "--dry-run", "--json"))
    assert dry["ids"] == [rows["failed"]]
    assert statuses(clean_db)[rows["failed"]] == "failed"
    # Replayed: pending again, attempts from 0, an audit entry naming the actor
    done = as_json(cli("admin", "inbox", "replay", str(rows["failed"]), "--actor", "ops", "--json"))
    assert done["ids"] == [rows["failed"]]
    with clean_db.connect() as conn:
        again = conn.execute(
            select(inbox.c.status, inbox.c.attempts, inbox.c.settled_at).where(
                inbox.c.id == rows["failed"]
            )
        ).one()
    assert tuple(again) == ("pending", 0, None)
    # The ignored rows, by filter
    ignored = cli("admin", "inbox", "replay", "--all-failed", "--status", "ignored", "--json")
    assert as_json(ignored)["ids"] == [rows["ignored"]]
    entries = [(a["actor"], a["action"], a["row_count"]) for a in audits(clean_db)]
    assert entries[0] == ("ops", "inbox_replay", 1)
    assert [e[1:] for e in entries] == [("inbox_replay", 1), ("inbox_replay", 1)]
