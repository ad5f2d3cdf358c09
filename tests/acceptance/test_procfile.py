"""The Procfile under honcho: relay and worker converge Stream, and stop cleanly.

honcho (like Heroku) sends SIGTERM to every process of the group at shutdown;
the worker must finish its in-flight jobs and hand prefetched messages back to
Redis, so that nothing is stranded.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator

import dramatiq
import pytest
from redis import Redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import install
from stream_outbox.app_hooks.reference import Conversation, ConversationParticipant, User
from stream_outbox.emulator import Emulator
from stream_outbox.worker import runtime
from stream_outbox.worker.pipeline.broker import build_broker, declare_actors
from tests.support.outbox import status_counts
from tests.support.processes import free_port, script, started_processes, stop, wait_for
from tests.support.redis import REDIS_PREFIX, clear_redis, redis_db_url
from tests.support.settings import BIN, ROOT, clean_environ, product_env, product_settings

pytestmark = pytest.mark.slow

REDIS_DB = 12


@pytest.fixture()
def env(database_url: str, redis_url: str, emu: Emulator) -> dict[str, str]:
    redis = redis_db_url(REDIS_DB)
    clear_redis(redis, REDIS_PREFIX)
    return clean_environ(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **product_env(
            database_url,
            redis,
            emu.base_url,
            prefix=REDIS_PREFIX,
            OUTBOX_WORKER_THREADS="2",
            OUTBOX_INBOUND_PORT=str(free_port()),
            OUTBOX_VISIBILITY_TIMEOUT="600",
            PYTHONUNBUFFERED="1",
        ),
    )


@pytest.fixture()
def honcho(env: dict[str, str]) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    """Start the Procfile under honcho, in a process group of its own as under a runner."""
    with started_processes(env, cwd=ROOT) as launch:
        yield lambda: launch(*script("honcho", "start", "-f", str(ROOT / "Procfile")))


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


def unacked(redis_url: str) -> dict[str, int]:
    """The messages each worker has fetched and not yet acked, by its acks key."""
    client = Redis.from_url(redis_url)
    try:
        keys = client.scan_iter(match=f"{REDIS_PREFIX}:dramatiq:__acks__.*")
        return {key.decode(): n for key in keys if (n := client.scard(key))}
    finally:
        client.close()


def test_honcho_runs_the_pair_to_convergence(
    honcho: Callable[[], subprocess.Popen[str]], clean_db: Engine, emu: Emulator
) -> None:
    factory = sessionmaker(clean_db)
    install(factory)
    process = honcho()
    conversations(factory, 5)
    wait_for(lambda: status_counts(clean_db) == {"done": 11}, "11 rows done")
    assert sum(1 for cid in emu.state()["channels"] if cid.startswith("messaging:dm_")) == 5
    out = stop(process, timeout=60)
    assert "relay stopped" in out and "worker stopped" in out, out
    assert "inbound stopped" in out, out


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
    wait_for(lambda: len(emu.request_log("GetOrCreateChannel")) >= 3, "three channels asked for")
    # When the runner stops the whole process group
    out = stop(process, timeout=60)
    # (the worker's own line: honcho prints "worker.1 stopped (rc=...)" whatever happened;
    # a worker slower to stop than honcho's 5 s is killed, its jobs and locks stranded)
    assert "stream_outbox.worker.pipeline.processes worker stopped" in out, out
    assert "SIGKILL" not in out and "Traceback" not in out, out
    left = status_counts(clean_db)
    assert left.get("dispatched", 0) + left.get("pending", 0) > 0, "stopped too late to test"
    # and the stopped worker holds no message it fetched and never ran (in its acks, no
    # other worker could take it before Dramatiq's maintenance requeues a dead worker's)
    assert unacked(env["REDIS_URL"]) == {}, unacked(env["REDIS_URL"])
    # Then every dispatched row's job is still in Redis: a fresh worker, with no relay
    # (so nothing is dispatched again), finishes them all.
    settings = product_settings(
        env["DATABASE_URL"], env["REDIS_URL"], emu.base_url, prefix=REDIS_PREFIX
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
            raise AssertionError(f"jobs left in Redis: {status_counts(clean_db)}\n{out}") from None
        assert status_counts(clean_db).get("dispatched", 0) == 0, status_counts(clean_db)
    finally:
        worker.stop(timeout=5000)
        broker.close()
        runtime.reset()
        rt.engine.dispose()
        rt.redis.close()
    # pending rows (never claimed before the stop) are the relay's next batch, not stranded
    assert set(status_counts(clean_db)) <= {"done", "pending"}
