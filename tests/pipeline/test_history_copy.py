"""The history copy of a restored thread's channel (its next generation) keeps to its lock's
lease, never moves the cursor of a generation made after its own, and goes on past a
message Stream refuses, which fails alone in a row of its own. Against the emulator,
through the real SDK, with the shapes app (soft deletes).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.emulator.endpoints import messages as emulator_messages
from stream_outbox.worker import runtime
from stream_outbox.worker.operations.replay import replay
from stream_outbox.worker.pipeline.job_runner import run_job
from stream_outbox.worker.pipeline.jobs import Job, plan_jobs
from stream_outbox.worker.sync.conversations import reconcile_conversation
from tests.apps.shapes import BINDING, Post, ada_and_bob_in_a_thread
from tests.pipeline.test_channel_generations import _post, _posts, _set_deleted
from tests.support.pipeline import Pipeline, drift


def _restored_thread(
    pipeline: Pipeline, shapes: sessionmaker[Session], posts: int, too_long: int | None = None
) -> uuid.UUID:
    """A thread of ada and bob with posts ``p-1``... in Stream, deleted, then restored
    (its restore not run yet); post ``too_long`` is over Stream's 5,000 characters."""
    with shapes.begin() as session:
        ada, bob, thread = ada_and_bob_in_a_thread(session)
        for n in range(1, posts + 1):
            post = _post(n, thread, ada if n % 2 else bob)
            if n == too_long:
                post.body = "x" * 5001
            session.add(post)
    pipeline.drain()
    _set_deleted(shapes, thread.id, True)
    pipeline.drain()
    _set_deleted(shapes, thread.id, False)
    return thread.id


def _copy_job(pipeline: Pipeline) -> Job:
    """Run the restore's job (the channel's next generation, and its history row); return
    the history copy's job, claimed as the relay would, not run."""
    for job in plan_jobs(pipeline.repo.claim(100)):
        run_job(job.kind, list(job.target_ids), list(job.row_ids), job.payload)
    (copy,) = plan_jobs(pipeline.repo.claim(100))
    assert copy.payload["payloads"] == {copy.target_ids[0]: {"history": True}}
    return copy


def _run(job: Job) -> None:
    run_job(job.kind, list(job.target_ids), list(job.row_ids), job.payload)


def test_a_long_copy_stops_well_inside_its_lock_lease_and_a_new_job_goes_on(
    pipeline: Pipeline, shapes: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a restored thread of 60 posts, its copy due
    _restored_thread(pipeline, shapes, 60)
    copy = _copy_job(pipeline)
    # and a lock lease of 3 s while Stream takes 100 ms a message: the whole copy (6 s and
    # more) would outlive its lock, and other jobs of the thread would run meanwhile
    rt = runtime.current()
    monkeypatch.setattr(rt.settings, "lock_lease", timedelta(seconds=3))
    monkeypatch.setattr(rt.locks, "lease_ms", 3000)
    pipeline.emu.set_latency(100, endpoint="SendMessage")
    # When the copy's job runs once
    _run(copy)  # (it raised dramatiq.Retry for a LockLost when it outlived its lock)
    # Then it stopped in time: the first posts are in Stream in order, its row is done and
    # a continuation row waits for the rest
    sent = list(_posts(pipeline))
    assert 0 < len(sent) < 60
    assert sent == [f"msg1-p-{n}" for n in range(1, len(sent) + 1)]
    rows = pipeline.rows()
    assert {row["status"] for row in rows if row["id"] in copy.row_ids} == {"done"}
    waiting = [(row["target_kind"], row["payload"]) for row in rows if row["status"] != "done"]
    assert waiting == [("conversation", {"history": True})]
    # And the next jobs copy the rest, none twice
    pipeline.emu.clear_faults()
    monkeypatch.undo()
    pipeline.drain()
    assert list(_posts(pipeline)) == [f"msg1-p-{n}" for n in range(1, 61)]
    assert {row["status"] for row in pipeline.rows()} == {"done"}


def test_a_copy_stops_when_its_generation_is_deleted_and_made_again_meanwhile(
    pipeline: Pipeline, shapes: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a restored thread of three posts, generation 1's copy due
    thread = _restored_thread(pipeline, shapes, 3)
    copy = _copy_job(pipeline)
    # and, as that copy sends its first post, another job of the thread (the copy's lock
    # lost) deletes the channel and makes it again: generation 2, with its own copy due
    rt = runtime.current()
    send = rt.gateway.send_message
    raced: list[bool] = []

    def send_then_race(*args: Any, **kwargs: Any) -> bool:
        sent = send(*args, **kwargs)
        if not raced:
            raced.append(True)
            for deleted in (True, False):
                _set_deleted(shapes, thread, deleted)
                reconcile_conversation(rt, str(thread), {})
        return sent

    monkeypatch.setattr(rt.gateway, "send_message", send_then_race)
    # When generation 1's copy goes on, and then every row runs
    _run(copy)
    monkeypatch.undo()
    pipeline.drain()
    # Then it moved nothing of generation 2: the channel holds every post once, under
    # generation 2's ids, in order
    assert raced
    assert list(_posts(pipeline)) == ["msg2-p-1", "msg2-p-2", "msg2-p-3"]
    assert drift(pipeline, binding=BINDING) == []
    assert {row["status"] for row in pipeline.rows()} == {"done"}


def test_a_message_stream_refuses_fails_alone_and_the_copy_goes_on(
    pipeline: Pipeline, shapes: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a restored thread of four posts, the second over Stream's maximum length (its
    # live row failed already, code 20)
    thread = _restored_thread(pipeline, shapes, 4, too_long=2)
    # and a post written while the copy runs (as it sends its first one)
    rt = runtime.current()
    send = rt.gateway.send_message

    def send_then_post(channel_type: str, channel_id: str, body: dict[str, Any], user: str) -> bool:
        sent = send(channel_type, channel_id, body, user)
        if body["id"] == "msg1-p-1":
            with shapes.begin() as session:
                first = session.get_one(Post, "p-1")
                session.add(
                    Post(
                        key="p-5",
                        thread_id=thread,
                        author_id=first.author_id,
                        body="post 5",
                        posted_at=first.posted_at + timedelta(minutes=4),
                    )
                )
        return sent

    monkeypatch.setattr(rt.gateway, "send_message", send_then_post)
    # When every row runs
    pipeline.drain()
    # Then every other post is in Stream, in order, the one written meanwhile too
    assert list(_posts(pipeline)) == ["msg1-p-1", "msg1-p-3", "msg1-p-4", "msg1-p-5"]
    # and the refused post has a failed row of its own, naming Stream's code 20
    failed = [row for row in pipeline.rows() if row["status"] != "done"]
    assert {(row["target_kind"], row["target_id"], row["status"]) for row in failed} == {
        ("message", "p-2", "failed")
    }
    (refused,) = [row for row in failed if row["event"] == "history"]
    assert "SendMessage HTTP 400 code 20: " in refused["last_error"]
    assert "message is too long" in refused["last_error"]
    # When the channel type's limit is raised, and that row replayed
    monkeypatch.setattr(emulator_messages, "MAX_MESSAGE_LENGTH", 10_000)
    replay(pipeline.engine, actor="test", ids=[refused["id"]])
    pipeline.drain()
    # Then the post is in Stream (last: Stream keeps the order messages arrive in), silent
    [cid] = pipeline.emu.state()["channels"]
    messages = {m["id"]: m for m in pipeline.emu.state()["messages"][cid]}
    assert list(_posts(pipeline))[-1] == "msg1-p-2"
    assert messages["msg1-p-2"]["silent"] is True
