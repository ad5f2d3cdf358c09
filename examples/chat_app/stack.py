"""The chat page's whole stack on one machine, for the demo, the browser tests and the
latency benchmark.

:func:`running_stack` starts the Stream emulator in this process (its webhooks sent to
the inbound receiver), migrates a scratch database (or the one given), seeds the demo's
story (:mod:`examples.chat_app.seed`), starts ``stream-outbox relay``, ``worker`` and
``inbound`` as subprocesses, serves the app under uvicorn in a thread, waits until each
answers and the new conversation is in Stream, and yields the URLs to open. On exit it
stops everything it started and drops what it made (the scratch database, its Redis keys).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import requests
import uvicorn
from fastapi import FastAPI
from redis import Redis
from sqlalchemy import Engine, create_engine

from examples.chat_app.app import create_app
from examples.chat_app.page import FRONTEND_DIST
from examples.chat_app.seed import Cast, seed
from stream_outbox.app_hooks.lookup import channel_for_conversation
from stream_outbox.app_hooks.reference import Base
from stream_outbox.emulator import Emulator
from stream_outbox.worker.demo.scratch_db import scratch_database
from stream_outbox.worker.operations.migrate import upgrade
from stream_outbox.worker.runtime import delete_prefixed_keys
from stream_outbox.worker.settings import normalize_database_url

__all__ = ["PROCESSES", "Stack", "StackError", "running_stack"]

API_KEY = "chat-demo"
PROCESSES = ("relay", "worker", "inbound")
SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
# The product's variables: a subprocess gets the stack's, never the caller's.
_PRODUCT_VARIABLES = ("DATABASE_URL", "REDIS_URL", "GETSTREAM_", "STREAM_CHAT_", "OUTBOX_")


class StackError(RuntimeError):
    """A part of the stack did not start (the message says which, with its log's end)."""


@dataclass(frozen=True)
class Stack:
    """A running stack: where to open the page, the seeded ids and what runs."""

    app_url: str
    cast: Cast
    emulator: Emulator
    engine: Engine
    database_url: str
    processes: Mapping[str, subprocess.Popen[bytes]]  # relay, worker, inbound
    logs: Path  # one log per process: relay.log, worker.log, inbound.log

    def page_url(self, user: uuid.UUID, conversation: uuid.UUID) -> str:
        """The page of ``conversation`` signed in as ``user``."""
        query = urlencode({"user": str(user), "conversation": str(conversation)})
        return f"{self.app_url}/?{query}"

    @property
    def urls(self) -> dict[str, str]:
        """The pages to open: each user in the new conversation and in the legacy one."""
        cast = self.cast
        return {
            "organizer": self.page_url(cast.organizer, cast.conversation),
            "guest": self.page_url(cast.guest, cast.conversation),
            "organizer, legacy": self.page_url(cast.organizer, cast.legacy),
            "guest, legacy": self.page_url(cast.guest, cast.legacy),
        }


@contextmanager
def running_stack(
    *,
    database_url: str | None = None,
    server_url: str | None = None,
    redis_url: str | None = None,
    port: int = 0,
    latency_ms: float = 0.0,
    frontend_dist: Path = FRONTEND_DIST,
    worker_threads: int = 4,
) -> Iterator[Stack]:
    """The stack, started; stopped on exit.

    ``database_url``: a database to use as it is (migrated and seeded here); otherwise a
    scratch database on ``server_url`` (default ``DATABASE_URL``, else local PostgreSQL),
    dropped on exit. ``redis_url`` (default ``REDIS_URL``, else local Redis) holds the
    stack's keys under a prefix of its own. ``port``: the app's (0: any free one).
    ``latency_ms`` is added to every emulator call.
    """
    with ExitStack() as stack:
        secret = secrets.token_hex(24)
        emulator = stack.enter_context(
            Emulator(api_key=API_KEY, api_secret=secret, latency_ms=latency_ms, stream_limits=False)
        )
        url = database_url or stack.enter_context(
            scratch_database(
                normalize_database_url(server_url or os.environ.get("DATABASE_URL", SERVER_URL)),
                "stream_outbox_chat_demo",
                connect_timeout=5,
            )
        )
        url = normalize_database_url(url)
        engine = _migrated(url)
        stack.callback(engine.dispose)
        cast = seed(engine)
        redis = redis_url or os.environ.get("REDIS_URL", REDIS_URL)
        prefix = f"stream_outbox_chat_demo_{uuid.uuid4().hex[:8]}"
        stack.callback(_delete_keys, redis, prefix)
        inbound_port = _free_port()
        hook = f"http://127.0.0.1:{inbound_port}/stream/webhook"
        emulator.client().update_app_settings(
            event_hooks=[{"hook_type": "webhook", "webhook_url": hook, "enabled": True}]
        )
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chat-demo-")))
        env = _product_env(
            DATABASE_URL=url,
            REDIS_URL=redis,
            GETSTREAM_API_KEY=API_KEY,
            GETSTREAM_API_SECRET=secret,
            STREAM_CHAT_URL=emulator.base_url,
            OUTBOX_REDIS_PREFIX=prefix,
            OUTBOX_INBOUND_PORT=str(inbound_port),
            OUTBOX_WORKER_THREADS=str(worker_threads),
            OUTBOX_STREAM_LIMITS="false",  # the emulator applies none either
        )
        processes = {name: stack.enter_context(_process(name, env, logs)) for name in PROCESSES}
        app = create_app(url, API_KEY, secret, emulator.base_url, frontend_dist)
        app_url = stack.enter_context(_serving(app, port))
        ready = Stack(app_url, cast, emulator, engine, url, processes, logs)
        _wait_until_ready(ready, inbound_port)
        yield ready


def _migrated(url: str) -> Engine:
    """The outbox's schema and the reference app's tables in ``url``'s database."""
    upgrade(url)
    engine = create_engine(url, pool_pre_ping=True)
    Base.metadata.create_all(engine)
    return engine


def _delete_keys(redis_url: str, prefix: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        delete_prefixed_keys(client, prefix)
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _product_env(**product: str) -> dict[str, str]:
    """This process's environment without the product's variables, then ``product``."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().startswith(_PRODUCT_VARIABLES)
    }
    return {**base, "PYTHONUNBUFFERED": "1", **product}


@contextmanager
def _process(name: str, env: Mapping[str, str], logs: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``stream-outbox {name}`` in a process group of its own, its output in ``{name}.log``;
    SIGTERM on exit (SIGKILL after 15 s)."""
    command = [str(Path(sys.executable).parent / "stream-outbox"), name]
    with (logs / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            command, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):  # the group is gone
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait)
            return


@contextmanager
def _serving(app: FastAPI, port: int) -> Iterator[str]:
    """``app`` under uvicorn in a thread on 127.0.0.1:``port``; its URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise StackError(f"the app cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="chat-app", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def _wait_until_ready(stack: Stack, inbound_port: int) -> None:
    """Until the app and the inbound receiver answer and the new conversation is in Stream."""
    with requests.Session() as http:
        http.trust_env = False  # no proxy between the stack and its own servers

        def answers(url: str) -> Callable[[], bool]:
            def check() -> bool:
                try:
                    return http.get(url, timeout=2).status_code == 200
                except requests.ConnectionError:
                    return False

            return check

        _wait(answers(f"{stack.app_url}/health"), "the app", stack)
        inbound = answers(f"http://127.0.0.1:{inbound_port}/healthz")
        _wait(inbound, "the inbound receiver", stack)

    def synced() -> bool:
        with stack.engine.connect() as conn:
            found = channel_for_conversation(conn, str(stack.cast.conversation))
        return found is not None and found.synced

    _wait(synced, "the new conversation in Stream (relay and worker)", stack)


def _wait(
    ready: Callable[[], bool],
    what: str,
    stack: Stack,
    timeout: float = 60.0,
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        for name, process in stack.processes.items():
            if process.poll() is not None:
                raise StackError(f"{what}: {name} ended ({process.returncode}){_tail(stack, name)}")
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def _tail(stack: Stack, name: str) -> str:
    text = (stack.logs / f"{name}.log").read_text(errors="replace")[-2000:]
    return f"; its log ends:\n{text}" if text else ""
