"""``stream-outbox demo``, the installed script, on real services and on embedded stand-ins."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis import Redis

from tests.support.database import databases_named
from tests.support.processes import script
from tests.support.settings import REDIS_URL, clean_environ

pytestmark = pytest.mark.slow

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CLOSED_REDIS = "redis://127.0.0.1:1/0"
VERDICT = "Verdict: in step (5 users, 4 channels, 1 deleted, 6 messages)"

Demo = Callable[..., tuple[subprocess.CompletedProcess[str], float]]


@pytest.fixture()
def demo(tmp_path: Path, pycache: Path) -> Demo:
    """Run ``stream-outbox demo`` in an empty directory with only the variables given."""

    def run(*args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
        environ = clean_environ(
            "STREAM_",
            "PYTHONDONTWRITEBYTECODE",
            COLUMNS="120",
            NO_COLOR="1",
            PYTHONPYCACHEPREFIX=str(pycache),
            **env,
        )
        started = time.monotonic()
        result = subprocess.run(
            script("stream-outbox", "demo", *args),
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        return result, time.monotonic() - started

    return run


def test_the_demo_on_postgresql_and_redis_leaves_nothing_behind(demo: Demo) -> None:
    # When the demo runs with the local PostgreSQL and Redis
    result, seconds = demo(DATABASE_URL=DATABASE_URL, REDIS_URL=REDIS_URL)

    # Then it ends in step, on both real services, well within half a minute
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].startswith(VERDICT), result.stdout
    database = next(line for line in lines if line.startswith("database"))
    broker = next(line for line in lines if line.startswith("broker"))
    assert "PostgreSQL" in database, database
    assert "Redis" in broker and "prefix of its own" in broker, broker
    assert seconds < 30
    # And its database and Redis keys are gone
    name = re.search(r"stream_outbox_demo_[0-9a-f]{8}", database)
    namespace = re.search(r"stream_outbox_demo_[0-9a-f]{8}", broker)
    assert name is not None and namespace is not None
    assert databases_named(name.group()) == []
    redis = Redis.from_url(REDIS_URL)
    try:
        assert list(redis.scan_iter(match=f"{namespace.group()}*")) == []
    finally:
        redis.close()


def test_the_demo_on_embedded_stand_ins(demo: Demo) -> None:
    # When the demo runs with no DATABASE_URL and a Redis that does not answer
    result, seconds = demo(REDIS_URL=CLOSED_REDIS)

    # Then SQLite and an in-process broker stand in, each said in one line
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(
        line.startswith("database") and "DATABASE_URL is not set" in line and "SQLite" in line
        for line in lines
    ), result.stdout
    assert any(
        line.startswith("broker") and "does not answer" in line and "fakeredis" in line
        for line in lines
    ), result.stdout
    # And it ends in step, the tables showing both sides
    assert lines[-1].startswith(VERDICT), result.stdout
    assert "Users" in result.stdout and "Channels" in result.stdout
    assert "Gus Garcia" in result.stdout and "deleted" in result.stdout
    assert seconds < 30


def test_the_demo_insisting_on_postgresql_without_one_is_one_line(demo: Demo) -> None:
    result, _ = demo("--postgres", REDIS_URL=CLOSED_REDIS)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: --postgres needs DATABASE_URL naming a PostgreSQL server"
    ]
