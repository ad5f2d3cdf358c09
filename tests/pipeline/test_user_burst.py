"""New users many jobs need at once: upserted once, 100 a call, through the shared queue.

Conversation jobs that find members Stream does not hold yet queue them in Redis; one
job at a time flushes the queue (a lease of 10 s), the others wait until their users
are known. A rename still lands after an upsert in flight (the users' locks), and a
flusher that died only delays the others by its lease.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections.abc import Callable

from redis import Redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from stream_outbox.app_hooks.reference import (
    Conversation,
    ConversationParticipant,
    Profile,
    User,
)
from stream_outbox.worker import runtime
from stream_outbox.worker.store.upsert_queue import UpsertQueue
from stream_outbox.worker.sync.users import ensure_users
from tests.support.pipeline import Pipeline


def new_users(session: Session, count: int, tag: str) -> list[str]:
    """``count`` new users (their rows left out later by :func:`forget_user_rows`)."""
    users = [User(email=f"{tag}{n}@example.com") for n in range(count)]
    session.add_all(users)
    session.flush()
    return [str(user.id) for user in users]


def forget_user_rows(pipeline: Pipeline) -> None:
    """Users with no outbox rows of their own: only conversations name them."""
    with pipeline.engine.begin() as conn:
        conn.execute(text("DELETE FROM stream_outbox WHERE target_kind = 'user'"))


def test_jobs_at_once_upsert_shared_new_users_once(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given 60 conversations of three among 80 users Stream does not hold, in 20 jobs
    # run by 12 threads of two workers, each call 20 ms
    pipeline.relay.conversations_per_job = 3
    pipeline.start_worker(threads=8)
    pipeline.emu.set_latency(20)
    rng = random.Random(5)
    with session_factory() as session, session.begin():
        users = new_users(session, 80, "burst")
        made: dict[str, list[str]] = {}
        for _ in range(60):
            conversation = Conversation()
            session.add(conversation)
            session.flush()
            members = rng.sample(users, 3)
            session.add_all(
                ConversationParticipant(conversation_id=conversation.id, user_id=uuid.UUID(m))
                for m in members
            )
            made[str(conversation.id)] = sorted(members)
    forget_user_rows(pipeline)
    # When the relay dispatches them and the workers run
    pipeline.drain(timeout=60)
    # Then every channel holds its members, and each user was upserted once, 100 a call
    # (a few calls more as the jobs start one after the other; 15 calls when each job
    # upserted the members it lacked)
    state = pipeline.emu.state()
    assert {row["status"] for row in pipeline.rows()} == {"done"}
    held = sorted(sorted(channel["members"]) for channel in state["channels"].values())
    assert held == sorted(made.values())
    assert set().union(*made.values()) <= set(state["users"])
    assert pipeline.counts()["UpdateUsers"] <= math.ceil(len(users) / 100) + 5


def test_a_rename_during_a_queued_upsert_lands_last(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given a new user whose upsert by the queue's flusher is in flight (300 ms a call)
    with session_factory() as session, session.begin():
        (user_id,) = new_users(session, 1, "renamed")
        session.add(Profile(user_id=uuid.UUID(user_id), full_name="Old Name"))
    forget_user_rows(pipeline)  # the profile's row too
    pipeline.emu.set_latency(300, "UpdateUsers")
    rt = runtime.current()
    flusher = threading.Thread(target=ensure_users, args=(rt, [user_id]))
    flusher.start()
    redis = Redis.from_url(pipeline.settings.redis_url)
    lock = f"{pipeline.settings.redis_prefix}:lock:user:{user_id}"
    while not redis.exists(lock):  # the flusher holds the user's lock: it read the old name
        time.sleep(0.005)
    # When the user is renamed meanwhile and the rename's user job runs
    with session_factory() as session, session.begin():
        profile = session.get(Profile, uuid.UUID(user_id))
        assert profile is not None
        profile.full_name = "New Name"
    pipeline.drain()
    flusher.join(timeout=10)
    # Then the new name is the one Stream holds: the rename's upsert came after the other
    assert pipeline.emu.state()["users"][user_id]["name"] == "New Name"
    first, second = pipeline.emu.request_log("UpdateUsers")
    assert second["received"] >= first["answered"]


def test_a_dead_flusher_only_delays_the_others(pipeline: Pipeline) -> None:
    rt = runtime.current()
    with Session(pipeline.engine) as session, session.begin():
        users = new_users(session, 3, "orphaned")
    forget_user_rows(pipeline)
    # Given a flusher that took the queue's lock and died (its lease of 1 s left behind)
    queue = UpsertQueue(rt.redis, prefix=rt.settings.redis_prefix)
    rt.redis.set(queue.flusher_key, "dead", px=1000)
    # When a job needs these users
    present = ensure_users(rt, users)
    # Then, once the lease ran out, the job upserted them itself, in one call
    assert present == set(users)
    assert set(users) <= set(pipeline.emu.state()["users"])
    assert pipeline.counts()["UpdateUsers"] == 1
    assert not rt.redis.exists(queue.flusher_key)


def test_a_burst_of_renames_goes_to_stream_in_few_calls(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given forty users in Stream
    with session_factory() as session, session.begin():
        users = [User(email=f"named{n}@example.com") for n in range(40)]
        session.add_all(users)
        session.flush()
        session.add_all(Profile(user_id=user.id, full_name="Old") for user in users)
    pipeline.drain()
    pipeline.emu.reset_request_counts()
    # When each is renamed in a transaction of its own, and each rename is a job of its
    # own (as when the relay claims them a few at a time), run by two workers' threads
    for user in users:
        with session_factory() as session, session.begin():
            profile = session.get(Profile, user.id)
            assert profile is not None
            profile.full_name = f"New {user.id.hex[:6]}"
    pipeline.start_worker(threads=8)
    for row in pipeline.repo.claim(100):
        pipeline.send_user_job([row])
    pipeline.drain()
    # Then every new name is in Stream, in a few calls of many users each
    state = pipeline.emu.state()
    assert {row["status"] for row in pipeline.rows()} == {"done"}
    assert {state["users"][str(u.id)]["name"] for u in users} == {
        f"New {u.id.hex[:6]}" for u in users
    }
    assert pipeline.counts()["UpdateUsers"] <= 4
