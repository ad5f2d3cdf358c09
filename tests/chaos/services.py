"""What a chaos run stands on: a private Redis, a scratch database, the pipeline's processes.

Nothing shared is touched: Redis is a ``redis-server`` of the run's own on a free port
(restarted at will, without persistence), the database is created on the shared
PostgreSQL server for the run and dropped after it, and the relay and workers are
``stream-outbox`` subprocesses with a Redis key prefix of their own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO

from redis import Redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from stream_outbox.app_hooks.reference import Base
from stream_outbox.worker.operations.migrate import upgrade
from stream_outbox.worker.settings import normalize_database_url

__all__ = ["PIPELINE_APP", "PrivateRedis", "Process", "ScratchDatabase", "free_port"]

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
# The application_name of the relay's and workers' connections: the chaos run
# terminates these backends (pg_terminate_backend), never the writer's or others'.
PIPELINE_APP = "stream-outbox-chaos-pipeline"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A ``redis-server`` of the run's own: no snapshots, no AOF, so a restart loses all."""

    def __init__(self, log: IO[str]) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = log
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 10
        client = Redis.from_url(self.url, socket_connect_timeout=0.2)
        try:
            while True:
                try:
                    client.ping()
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: whatever it held (queues, locks, caches) is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, down_for: float) -> None:
        self.kill()
        time.sleep(down_for)
        self.start()


class ScratchDatabase:
    """A database of the run's own on the shared server, with the outbox and the app schema."""

    def __init__(self, server_url: str | None = None) -> None:
        server = server_url or os.environ.get(
            "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        )
        self.server = normalize_database_url(server)
        self.name = f"stream_outbox_chaos_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.url = make_url(self.server).set(database=self.name).render_as_string(False)
        self.admin = create_engine(self.server, isolation_level="AUTOCOMMIT")

    def create(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        upgrade(self.url)
        engine = create_engine(self.url)
        Base.metadata.create_all(engine)
        engine.dispose()

    def url_for(self, application_name: str) -> str:
        """The database's URL for connections that carry ``application_name``."""
        url = make_url(self.url).update_query_dict({"application_name": application_name})
        return url.render_as_string(hide_password=False)

    def engine(self, application_name: str, **options: object) -> Engine:
        return create_engine(self.url_for(application_name), pool_pre_ping=True, **options)

    def terminate_pipeline_backends(self) -> int:
        """``pg_terminate_backend`` on the relay's and workers' connections; how many."""
        query = text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = :db AND application_name = :app AND pid <> pg_backend_pid()"
        )
        with self.admin.connect() as conn:
            return int(conn.scalar(query, {"db": self.name, "app": PIPELINE_APP}) or 0)

    def drop(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


class Process:
    """One ``stream-outbox`` command (relay or worker), killed and restarted at will."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: IO[str]) -> None:
        self.name, self.args, self.env, self.log = name, args, env, log
        self.process: subprocess.Popen[str] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.log.write(f"--- {self.name} start {self.starts} ---\n")
        self.log.flush()
        self.process = subprocess.Popen(
            [str(BIN / "stream-outbox"), *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no shutdown, in-flight jobs and held locks stranded."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 30 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill9()
