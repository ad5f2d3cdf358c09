"""Admin fixtures: seeded outbox rows and an in-process CLI runner with the settings' env."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from typer.testing import Result

from stream_outbox.emulator import Emulator
from tests.support.cli import invoke
from tests.support.outbox import add_row
from tests.support.redis import clear_redis, new_prefix
from tests.support.settings import API_KEY, API_SECRET


@pytest.fixture()
def cli(
    database_url: str,
    redis_url: str,
    clean_db: Engine,
    emu: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., Result]]:
    """Run ``stream-outbox`` in-process with DATABASE_URL, the tests' Redis (the shared rate
    budget, under a prefix of this test's own) and the emulator's credentials."""
    prefix = new_prefix("admin")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("OUTBOX_REDIS_PREFIX", prefix)
    monkeypatch.setenv("GETSTREAM_API_KEY", API_KEY)
    monkeypatch.setenv("GETSTREAM_API_SECRET", API_SECRET)
    monkeypatch.setenv("STREAM_CHAT_URL", emu.base_url)
    yield invoke
    clear_redis(redis_url, prefix)


@pytest.fixture()
def seeded(clean_db: Engine) -> dict[str, int]:
    """A mixed outbox: done, pending and failed rows of each kind, some old."""
    now = datetime.now(UTC)
    ids = {
        "done_old": add_row(
            clean_db,
            status="done",
            created_at=now - timedelta(days=30),
            updated_at=now - timedelta(days=30),
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
            created_at=now - timedelta(hours=5),
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
