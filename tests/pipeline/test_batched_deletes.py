"""Deleted conversations of one batch deleted in Stream together: a DeleteChannels call a
hundred, each followed to its end, every map entry marked before Stream is asked.
Against the emulator, through the real SDK."""

from __future__ import annotations

import math
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import channel_map
from stream_outbox.app_hooks.reference import Conversation
from tests.apps.shapes import Account, Member, Thread
from tests.pipeline.test_batched_conversations import channels_of, converse, statuses
from tests.pipeline.test_user_lifecycle import NOW
from tests.support.pipeline import Pipeline


def _delete(session_factory: Callable[[], Session], conversation_ids: list[str]) -> None:
    """Delete these conversations in one transaction (one batch)."""
    with session_factory() as session, session.begin():
        for conversation_id in conversation_ids:
            session.delete(session.get_one(Conversation, conversation_id))


def _marked_deleted(pipeline: Pipeline, conversation_ids: list[str]) -> set[str]:
    query = select(channel_map.c.conversation_id).where(
        channel_map.c.conversation_id.in_(conversation_ids), channel_map.c.deleted_at.is_not(None)
    )
    with pipeline.engine.connect() as conn:
        return set(conn.scalars(query))


def test_a_batch_of_deleted_conversations_takes_a_delete_channels_call_a_hundred(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given 150 conversations in Stream, and batches that hold them all
    pipeline.relay.conversations_per_job = 200
    with session_factory() as session, session.begin():
        made = converse(session, 150, "bye")
    pipeline.drain(timeout=60)
    cids = channels_of(pipeline.engine, list(made))
    pipeline.emu.reset_request_counts()
    # When all 150 are deleted together, and the outbox drains
    _delete(session_factory, list(made))
    pipeline.drain(timeout=60)
    # Then two DeleteChannels calls (each task followed once) deleted every channel
    counts = pipeline.counts()
    assert counts["DeleteChannels"] == math.ceil(150 / 100) == 2
    assert counts["GetTask"] == 2
    assert "DeleteChannel" not in counts
    channels = pipeline.emu.state()["channels"]
    assert all(channels[cid]["deleted_at"] for cid in cids.values())
    # And every map entry is marked deleted, every row done
    assert _marked_deleted(pipeline, list(made)) == set(made)
    assert statuses(pipeline.rows()) == {"done"}


def test_a_transient_failure_of_the_batch_delete_retries_its_conversations(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given five conversations in Stream, and Stream unavailable for the first batch delete
    with session_factory() as session, session.begin():
        made = converse(session, 5, "flaky")
    pipeline.drain()
    cids = channels_of(pipeline.engine, list(made))
    pipeline.emu.inject_failure("DeleteChannels", status=503, times=1)
    # When they are deleted together
    _delete(session_factory, list(made))
    pipeline.drain()
    # Then the 503 was retried, and every channel is deleted, every row done
    by_status = pipeline.emu.request_counts()["by_status"]
    assert by_status["DeleteChannels 503"] == 1
    channels = pipeline.emu.state()["channels"]
    assert all(channels[cid]["deleted_at"] for cid in cids.values())
    assert _marked_deleted(pipeline, list(made)) == set(made)
    assert statuses(pipeline.rows()) == {"done"}


def test_a_channel_stream_refuses_in_a_batch_delete_fails_alone(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given three conversations in Stream; Stream refuses their batch delete whole, then
    # the first channel alone (the batch goes again in halves: one, then two)
    with session_factory() as session, session.begin():
        made = converse(session, 3, "stuck")
    pipeline.drain()
    cids = channels_of(pipeline.engine, list(made))
    pipeline.emu.inject_failure("DeleteChannels", status=400, code=4, message="refused", times=1)
    pipeline.emu.inject_failure("DeleteChannel", status=400, code=4, message="frozen", times=1)
    # When they are deleted together
    _delete(session_factory, list(made))
    pipeline.drain()
    # Then the refused one's rows fail with Stream's error, the others' are done
    rows = [row for row in pipeline.rows() if row["target_kind"] == "conversation"]
    failed = {row["target_id"] for row in rows if row["status"] == "failed"}
    assert len(failed) == 1
    assert statuses([row for row in rows if row["target_id"] not in failed]) == {"done"}
    assert all("frozen" in row["last_error"] for row in rows if row["status"] == "failed")
    channels = pipeline.emu.state()["channels"]
    left = [cid for cid, channel in cids.items() if not channels[channel]["deleted_at"]]
    assert set(left) == failed


def test_threads_back_after_a_batch_delete_get_a_new_generation(
    pipeline: Pipeline, shapes: sessionmaker[Session]
) -> None:
    # Given two threads in Stream
    with shapes.begin() as session:
        ada, bob = Account(email_address="ada@e.com"), Account(email_address="bob@e.com")
        session.add_all([ada, bob])
        session.flush()
        threads = [Thread(), Thread()]
        session.add_all(threads)
        session.flush()
        session.add_all(
            Member(thread_id=thread.id, account_id=a.id) for thread in threads for a in (ada, bob)
        )
    pipeline.drain()
    ids = [str(thread.id) for thread in threads]
    # When both are soft-deleted together: one DeleteChannels deletes both channels
    pipeline.emu.reset_request_counts()
    with shapes.begin() as session:
        for thread in threads:
            session.get_one(Thread, thread.id).deleted_at = NOW
    pipeline.drain()
    assert pipeline.counts()["DeleteChannels"] == 1
    assert all(channel["deleted_at"] for channel in pipeline.emu.state()["channels"].values())
    # And when they are restored
    with shapes.begin() as session:
        for thread in threads:
            session.get_one(Thread, thread.id).deleted_at = None
    pipeline.drain()
    # Then each is its channel's next generation, and Stream holds the channel again
    query = select(channel_map.c.conversation_id, channel_map.c.generation).where(
        channel_map.c.conversation_id.in_(ids), channel_map.c.deleted_at.is_(None)
    )
    with pipeline.engine.connect() as conn:
        assert dict(conn.execute(query).all()) == dict.fromkeys(ids, 1)
    channels = pipeline.emu.state()["channels"].values()
    assert [bool(channel["deleted_at"]) for channel in channels] == [False, False]


def test_a_burst_of_deletions_one_job_each_goes_to_stream_in_few_calls(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given forty conversations in Stream
    with session_factory() as session, session.begin():
        made = converse(session, 40, "burst")
    pipeline.drain(timeout=60)
    cids = channels_of(pipeline.engine, list(made))
    pipeline.emu.reset_request_counts()
    # When each is deleted in a transaction of its own, and each deletion is a job of its
    # own (as when the relay claims them one at a time), run by two workers' threads
    for conversation_id in made:
        _delete(session_factory, [conversation_id])
    pipeline.start_worker(threads=8)
    pipeline.relay.conversations_per_job = 1
    pipeline.drain(timeout=60)
    # Then every channel is deleted, in a few calls of many channels each
    channels = pipeline.emu.state()["channels"]
    assert all(channels[cid]["deleted_at"] for cid in cids.values())
    assert _marked_deleted(pipeline, list(made)) == set(made)
    assert statuses(pipeline.rows()) == {"done"}
    counts = pipeline.counts()
    deletions = counts.get("DeleteChannels", 0) + counts.get("DeleteChannel", 0)
    assert deletions <= 6, counts
