"""Redis for tests: a key prefix of each run's own on the shared server, and private
``redis-server`` processes for runs that stop or restart theirs."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from typing import IO

import pytest
from redis import Redis

from stream_outbox.worker.runtime import delete_prefixed_keys
from tests.support.processes import free_port, kill, start, wait_for
from tests.support.settings import REDIS_URL

__all__ = [
    "REDIS_PREFIX",
    "TEST_REDIS_DB",
    "PrivateRedis",
    "clear_redis",
    "new_prefix",
    "redis_db_url",
    "redis_server",
    "server_trouble",
]

TEST_REDIS_DB = 13


def new_prefix(purpose: str) -> str:
    """A Redis key prefix no other run uses: ``{purpose}_{pid}_{random}``."""
    return f"{purpose}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


# Every Redis key of this test run carries this prefix: runs sharing a Redis never meet.
REDIS_PREFIX = new_prefix("stream_outbox_test")


def redis_db_url(db: int = TEST_REDIS_DB) -> str:
    """The shared server's database ``db`` (the tests keep out of the default one)."""
    base = REDIS_URL.rsplit("/", 1)[0] if REDIS_URL.count("/") > 2 else REDIS_URL
    return f"{base}/{db}"


def server_trouble(url: str) -> str | None:
    """None when the Redis at ``url`` answers, else one line saying what to start."""
    client = Redis.from_url(url)
    try:
        client.ping()
    except Exception as exc:
        base = url.rsplit("/", 1)[0]
        return (
            f"Redis does not answer at {base} ({type(exc).__name__}); start it "
            "(redis-server --daemonize yes) or set REDIS_URL"
        )
    finally:
        client.close()
    return None


def clear_redis(url: str, prefix: str = REDIS_PREFIX) -> None:
    """Delete the keys under ``prefix`` (this test run's by default)."""
    client = Redis.from_url(url)
    try:
        delete_prefixed_keys(client, prefix)
    finally:
        client.close()


def redis_server() -> str:
    """The ``redis-server`` binary, for tests that start (and stop) Redis servers of their
    own; a test fails, not skips, without it (``.ci/run`` installs it)."""
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    return found


class PrivateRedis:
    """A ``redis-server`` of the run's own on a free port: no snapshots, no AOF, so a
    restart loses all."""

    def __init__(self, log: IO[str]) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = log
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start the server; return once it answers."""
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = start(["redis-server", *args], output=self.log)
        client = Redis.from_url(self.url, socket_connect_timeout=0.2)
        try:
            wait_for(lambda: _answers(client), "redis-server", timeout=10, process=self.process)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: whatever it held (queues, locks, caches) is gone."""
        if self.process is not None:
            kill(self.process)

    def restart(self, down_for: float) -> None:
        self.kill()
        time.sleep(down_for)
        self.start()


def _answers(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False
