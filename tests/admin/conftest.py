"""Admin fixtures: seeded outbox rows and an in-process CLI runner with the settings' env."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import Engine, insert, select
from typer.testing import CliRunner

from stream_outbox.app_hooks.outbox import audit, outbox
from stream_outbox.emulator import Emulator
from stream_outbox.worker.cli import app
from tests.conftest import API_KEY, API_SECRET

NOW = datetime.now(UTC)


@pytest.fixture()
def cli(
    database_url: str, clean_db: Engine, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    """Run ``stream-outbox`` in-process with DATABASE_URL and the emulator's credentials."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("GETSTREAM_API_KEY", API_KEY)
    monkeypatch.setenv("GETSTREAM_API_SECRET", API_SECRET)
    monkeypatch.setenv("STREAM_CHAT_URL", emu.base_url)
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), input=input, catch_exceptions=True)

    return run


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def add_row(engine: Engine, **values: Any) -> int:
    """Insert one outbox row; returns its id."""
    row = {"target_kind": "user", "target_id": "u1", "event": "insert", "payload": {}}
    row.update(values)
    with engine.begin() as conn:
        return int(conn.execute(insert(outbox).values(**row).returning(outbox.c.id)).scalar_one())


@pytest.fixture()
def seeded(clean_db: Engine) -> dict[str, int]:
    """A mixed outbox: done, pending and failed rows of each kind, some old."""
    ids = {
        "done_old": add_row(
            clean_db,
            status="done",
            created_at=NOW - timedelta(days=30),
            updated_at=NOW - timedelta(days=30),
        ),
        "done_new": add_row(clean_db, status="done", target_id="u2"),
        "pending": add_row(clean_db, target_kind="conversation", target_id="c1"),
        "failed_conv": add_row(
            clean_db,
            status="failed",
            target_kind="conversation",
            target_id="c2",
            last_error="GetOrCreateChannel HTTP 400 code 4: channel data is invalid",
        ),
        "failed_user": add_row(
            clean_db,
            status="failed",
            target_id="u3",
            last_error="after 11 attempts: UpdateUsers HTTP 503: unavailable",
            created_at=NOW - timedelta(hours=5),
        ),
        "failed_msg": add_row(
            clean_db,
            status="failed",
            target_kind="message",
            target_id="m1",
            last_error="SendMessage HTTP 400 code 4: 100%_sure",
        ),
    }
    return ids


def statuses(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(outbox.c.id, outbox.c.status)).all())  # type: ignore[arg-type]


def audits(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(audit).order_by(audit.c.id))]
