"""The Procfile under honcho: relay and worker converge Stream, and stop cleanly.

honcho (like Heroku) sends SIGTERM to every process of the group at shutdown;
the worker must finish its in-flight jobs and hand prefetched messages back to
Redis, so that nothing is stranded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dramatiq
import pytest
from redis import Redis
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import install, outbox
from stream_outbox.app_hooks.reference import Conversation, ConversationParticipant, User
from stream_outbox.emulator import Emulator
from stream_outbox.worker import runtime
from stream_outbox.worker.pipeline.broker import build_broker, declare_actors
from stream_outbox.worker.settings import Settings
from tests.conftest import API_KEY, API_SECRET, REDIS_PREFIX, clear_redis

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REDIS_DB = 12


@pytest.fixture()
def env(database_url: str, redis_url: str, emu: Emulator) -> dict[str, str]:
    redis = redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    clear_redis(redis, REDIS_PREFIX)
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis,
        "GETSTREAM_API_KEY": API_KEY,
        "GETSTREAM_API_SECRET": API_SECRET,
        "STREAM_CHAT_URL": emu.base_url,
        "OUTBOX_WORKER_THREADS": "2",
        "OUTBOX_VISIBILITY_TIMEOUT": "600",
        "OUTBOX_REDIS_PREFIX": REDIS_PREFIX,
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture()
def honcho(env: dict[str, str]) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [str(BIN / "honcho"), "start", "-f", str(ROOT / "Procfile")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a process group of its own, as under a runner
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def conversations(factory: sessionmaker[Session], count: int) -> None:
    with factory() as session, session.begin():
        users = [User(email=f"p{n}@example.com") for n in range(count + 1)]
        session.add_all(users)
        session.flush()
        for n in range(count):
            conversation = Conversation()
            session.add(conversation)
            session.flush()
            session.add_all(
                [
                    ConversationParticipant(conversation_id=conversation.id, user_id=users[n].id),
                    ConversationParticipant(
                        conversation_id=conversation.id, user_id=users[n + 1].id
                    ),
                ]
            )


def statuses(engine: Engine) -> dict[str, int]:
    query = select(outbox.c.status, func.count()).group_by(outbox.c.status)
    with engine.connect() as conn:
        return {status: n for status, n in conn.execute(query)}


def unacked(redis_url: str) -> dict[str, int]:
    """The messages each worker has fetched and not yet acked, by its acks key."""
    client = Redis.from_url(redis_url)
    try:
        keys = client.scan_iter(match=f"{REDIS_PREFIX}:dramatiq:__acks__.*")
        return {key.decode(): n for key in keys if (n := client.scard(key))}
    finally:
        client.close()


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_honcho_runs_the_pair_to_convergence(
    honcho: Callable[[], subprocess.Popen[str]], clean_db: Engine, emu: Emulator
) -> None:
    factory = sessionmaker(clean_db)
    install(factory)
    process = honcho()
    conversations(factory, 5)
    wait_for(lambda: statuses(clean_db) == {"done": 11}, timeout=30)
    assert sum(1 for cid in emu.state()["channels"] if cid.startswith("messaging:dm_")) == 5
    os.killpg(process.pid, signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert "relay stopped" in out and "worker stopped" in out, out


def test_stopping_a_busy_honcho_strands_nothing(
    honcho: Callable[[], subprocess.Popen[str]],
    clean_db: Engine,
    emu: Emulator,
    env: dict[str, str],
) -> None:
    # Given a backlog, and a slow Stream so that jobs are in flight when the stop comes:
    # one conversation a job, one Stream call at a time, so that two threads cannot hold
    # the whole backlog in flight (one batched job would, and finish it all before stopping)
    emu.set_latency(150, endpoint="GetOrCreateChannel")
    env["OUTBOX_CONVERSATIONS_PER_JOB"] = "1"
    env["OUTBOX_STREAM_CONCURRENCY"] = "1"
    factory = sessionmaker(clean_db)
    install(factory)
    conversations(factory, 40)
    process = honcho()
    wait_for(lambda: len(emu.request_log("GetOrCreateChannel")) >= 3, timeout=30)
    # When the runner stops the whole process group
    os.killpg(process.pid, signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    # (the worker's own line: honcho prints "worker.1 stopped (rc=...)" whatever happened;
    # a worker slower to stop than honcho's 5 s is killed, its jobs and locks stranded)
    assert "stream_outbox.worker.pipeline.processes worker stopped" in out, out
    assert "SIGKILL" not in out and "Traceback" not in out, out
    left = statuses(clean_db)
    assert left.get("dispatched", 0) + left.get("pending", 0) > 0, "stopped too late to test"
    # and the stopped worker holds no message it fetched and never ran (in its acks, no
    # other worker could take it before Dramatiq's maintenance requeues a dead worker's)
    assert unacked(env["REDIS_URL"]) == {}, unacked(env["REDIS_URL"])
    # Then every dispatched row's job is still in Redis: a fresh worker, with no relay
    # (so nothing is dispatched again), finishes them all.
    settings = Settings(
        database_url=env["DATABASE_URL"],
        redis_url=env["REDIS_URL"],
        getstream_api_key=API_KEY,
        getstream_api_secret=API_SECRET,
        stream_chat_url=emu.base_url,
        redis_prefix=REDIS_PREFIX,
    )
    emu.set_latency(0, endpoint="GetOrCreateChannel")
    broker = build_broker(settings)
    dramatiq.set_broker(broker)
    declare_actors(broker, settings)
    rt = runtime.Runtime.from_settings(settings)
    runtime.install(rt)
    worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=50)
    worker.start()
    try:
        try:
            broker.join(settings.queue_name, timeout=30_000)
        except dramatiq.errors.QueueJoinTimeout:
            raise AssertionError(f"jobs left in Redis: {statuses(clean_db)}\n{out}") from None
        assert statuses(clean_db).get("dispatched", 0) == 0, statuses(clean_db)
    finally:
        worker.stop(timeout=5000)
        broker.close()
        runtime.reset()
        rt.engine.dispose()
        rt.redis.close()
    # pending rows (never claimed before the stop) are the relay's next batch, not stranded
    assert set(statuses(clean_db)) <= {"done", "pending"}
