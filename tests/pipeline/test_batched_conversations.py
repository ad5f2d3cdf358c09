"""Conversations reconciled in batches: one job, one read, one id assignment for many.

The relay groups up to ``conversations_per_job`` conversations into one job; the job
reconciles them together, fails a conversation Stream refuses on its own, and when a
transient error stops it, settles what it did and retries only the rest.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import dramatiq
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from stream_outbox.app_hooks import channel_map
from stream_outbox.app_hooks.channel_ids import direct_message_id
from stream_outbox.app_hooks.reference import (
    REFERENCE_BINDING,
    Conversation,
    ConversationParticipant,
    User,
)
from stream_outbox.worker import runtime
from stream_outbox.worker.pipeline import job_runner
from stream_outbox.worker.pipeline.job_runner import run_job
from stream_outbox.worker.pipeline.jobs import Job, plan_jobs
from stream_outbox.worker.store.repository import ChannelRef, OutboxRepository
from stream_outbox.worker.sync import conversations as sync_conversations
from stream_outbox.worker.verify.compare import compare
from stream_outbox.worker.verify.readers import held_from_snapshot, read_desired
from tests.support.pipeline import Pipeline
from tests.support.story import invite


@pytest.fixture(autouse=True)
def conversations_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's conversations go to Stream in turn, as at low latency, whatever the
    gateway's average call time: on a loaded machine it passes SLOW_CALL and a batch
    would start them all at once (tests/pipeline/test_fanout.py covers that path), which
    is not what these tests are about."""
    monkeypatch.setattr(sync_conversations, "SLOW_CALL", math.inf)


def converse(session: Session, count: int, tag: str) -> dict[str, list[str]]:
    """``count`` two-person conversations, each between two new users: members by id."""
    made: dict[str, list[str]] = {}
    for n in range(count):
        first, second = User(email=f"{tag}{n}a@example.com"), User(email=f"{tag}{n}b@example.com")
        conversation = Conversation()
        session.add_all([first, second, conversation])
        session.flush()
        session.add_all(
            [
                ConversationParticipant(conversation_id=conversation.id, user_id=first.id),
                ConversationParticipant(conversation_id=conversation.id, user_id=second.id),
            ]
        )
        made[str(conversation.id)] = sorted([str(first.id), str(second.id)])
    session.flush()
    return made


def channels_of(engine: Engine, conversation_ids: list[str]) -> dict[str, str]:
    """The channel map's cid (``type:id``) of each of these conversations that has one."""
    query = select(
        channel_map.c.conversation_id, channel_map.c.channel_type, channel_map.c.channel_id
    ).where(channel_map.c.conversation_id.in_(conversation_ids))
    with engine.connect() as conn:
        return {row[0]: f"{row[1]}:{row[2]}" for row in conn.execute(query)}


def assert_channels_hold(pipeline: Pipeline, made: dict[str, list[str]]) -> None:
    """Every conversation of ``made`` has its channel in Stream, holding its members."""
    channels = pipeline.emu.state()["channels"]
    cids = channels_of(pipeline.engine, list(made))
    assert set(cids) == set(made)
    for conversation_id, members in made.items():
        assert sorted(channels[cids[conversation_id]]["members"]) == members


def conversation_rows(pipeline: Pipeline) -> dict[str, list[dict[str, Any]]]:
    """Each conversation's outbox rows, conversations in the order their first row came."""
    found: dict[str, list[dict[str, Any]]] = {}
    for row in pipeline.rows():  # by id
        if row["target_kind"] == "conversation":
            found.setdefault(row["target_id"], []).append(row)
    return found


def statuses(rows: list[dict[str, Any]]) -> set[str]:
    return {row["status"] for row in rows}


def one_batch(pipeline: Pipeline) -> Job:
    """Claim the outbox as the relay would, run every job but the conversation batch, and
    return that batch (the test runs it by hand)."""
    jobs = plan_jobs(pipeline.repo.claim(100))
    batch = next(job for job in jobs if job.kind == "conversation")
    for job in jobs:
        if job is not batch:
            pipeline.actor.send(job.kind, list(job.target_ids), list(job.row_ids), job.payload)
    pipeline.broker.join(pipeline.settings.queue_name, timeout=10_000)
    return batch


def test_many_conversations_converge_in_few_jobs(
    pipeline: Pipeline, session_factory: Callable[[], Session], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stream_outbox.worker.pipeline.job_runner")
    # Given thirty conversations committed together, and jobs of twenty conversations
    pipeline.relay.conversations_per_job = 20
    with session_factory() as session, session.begin():
        made = converse(session, 30, "many")
    # When the relay dispatches them and the workers run
    pipeline.drain()
    # Then every channel is in Stream with its two members, and every row is done
    assert_channels_hold(pipeline, made)
    assert statuses(pipeline.rows()) == {"done"}
    # And thirty conversations took a couple of jobs, not thirty
    jobs = [
        record
        for record in caplog.records
        if getattr(record, "action", None) == "reconcile"
        and getattr(record, "kind", None) == "conversation"
    ]
    assert len(jobs) == math.ceil(30 / pipeline.relay.conversations_per_job) == 2
    assert {getattr(record, "outcome", None) for record in jobs} == {"done"}
    counts = pipeline.counts()
    assert counts["GetOrCreateChannel"] == 30  # one create per conversation, no repeat
    # the users' job, and at most one member upsert per conversation job
    assert counts.get("UpdateUsers", 0) <= 1 + len(jobs) < 30


def test_a_conversation_stream_refuses_fails_alone_in_its_batch(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given Stream refuses the first channel it is asked to create, and five
    # conversations committed together (one job: the first of them is refused)
    pipeline.emu.inject_failure(
        "GetOrCreateChannel", status=400, times=1, code=4, message="channel data is invalid"
    )
    with session_factory() as session, session.begin():
        made = converse(session, 5, "refused")
    # When the job runs
    pipeline.drain()
    # Then the refused conversation's rows fail with Stream's error, at once
    rows = conversation_rows(pipeline)
    assert set(rows) == set(made)
    refused, *others = rows  # the job's first target: the first reconciled
    assert statuses(rows[refused]) == {"failed"}
    for row in rows[refused]:
        assert "GetOrCreateChannel HTTP 400 code 4" in row["last_error"]
        assert "channel data is invalid" in row["last_error"]
    by_status = pipeline.emu.request_counts()["by_status"]
    assert by_status["GetOrCreateChannel 400"] == 1  # no retry
    # And the other four, after it in the same job, are done with their channels
    assert by_status["GetOrCreateChannel 201"] == 4
    channels = pipeline.emu.state()["channels"]
    cids = channels_of(pipeline.engine, list(made))
    for conversation_id in others:
        assert statuses(rows[conversation_id]) == {"done"}
        assert rows[conversation_id][0]["last_error"] is None
        assert sorted(channels[cids[conversation_id]]["members"]) == made[conversation_id]
    assert cids.get(refused) not in channels
    assert {row["status"] for row in pipeline.rows() if row["target_kind"] == "user"} == {"done"}


def test_a_transient_error_mid_batch_settles_what_was_done_and_continues_the_rest(
    pipeline: Pipeline, session_factory: Callable[[], Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given five conversations claimed as one job, and Stream allowing two creates
    # before it answers 429 (a window long enough that it does not reset meanwhile)
    with session_factory() as session, session.begin():
        made = converse(session, 5, "limited")
    batch = one_batch(pipeline)
    assert len(batch.target_ids) == 5
    pipeline.emu.set_window(3600)
    pipeline.emu.set_rate_limit("GetOrCreateChannel", 2)
    # (the rest's new job waits a second, not until the hour's window resets)
    monkeypatch.setattr(job_runner, "_delay_ms", lambda *_, **__: 1000)
    # When the job runs once
    run_job(batch.kind, list(batch.target_ids), list(batch.row_ids), batch.payload)
    # Then the two conversations reconciled before the 429 are done already
    rows = conversation_rows(pipeline)
    reached, unreached = list(batch.target_ids[:2]), list(batch.target_ids[2:])
    for conversation_id in reached:
        assert statuses(rows[conversation_id]) == {"done"}
    # and the others stay open with the error, for the retry
    for conversation_id in unreached:
        assert statuses(rows[conversation_id]) == {"dispatched"}
        assert all("HTTP 429" in row["last_error"] for row in rows[conversation_id])
    channels = pipeline.emu.state()["channels"]
    cids = channels_of(pipeline.engine, list(made))
    assert {cid for cid in made if cids.get(cid) in channels} == set(reached)
    # When Stream's limit lifts and the new job for the rest runs (its own retry budget)
    pipeline.emu.set_rate_limit("GetOrCreateChannel", None)
    pipeline.drain()
    # Then every conversation is in step, and the new job created only the three left
    assert statuses(pipeline.rows()) == {"done"}
    channels = pipeline.emu.state()["channels"]
    for conversation_id, members in made.items():
        assert sorted(channels[cids[conversation_id]]["members"]) == members
    by_status = pipeline.emu.request_counts()["by_status"]
    assert by_status["GetOrCreateChannel 429"] == 1
    assert by_status["GetOrCreateChannel 201"] == 5  # 2 + 3: none of the first two again


def test_twin_conversations_in_one_batch_get_distinct_channels(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given two conversations of the same two people, committed together
    with session_factory() as session, session.begin():
        ann, bob = User(email="ann@example.com"), User(email="bob@example.com")
        first, second = Conversation(), Conversation()
        session.add_all([ann, bob, first, second])
        session.flush()
        session.add_all(
            ConversationParticipant(conversation_id=conversation.id, user_id=user.id)
            for conversation in (first, second)
            for user in (ann, bob)
        )
        members = sorted([str(ann.id), str(bob.id)])
        twins = [str(first.id), str(second.id)]
    # When one job reconciles both
    pipeline.drain()
    # Then one has the direct-message id, the other its fallback, both with both members
    cids = channels_of(pipeline.engine, twins)
    dm = f"messaging:{direct_message_id(members)}"
    assert sorted(cids.values()) == sorted([dm, f"messaging:conversation_{_other(cids, dm)}"])
    channels = pipeline.emu.state()["channels"]
    for cid in cids.values():
        assert sorted(channels[cid]["members"]) == members
    assert statuses(pipeline.rows()) == {"done"}
    # And Stream holds what the database says
    desired = read_desired(pipeline.engine, REFERENCE_BINDING, pipeline.repo)
    assert [
        str(d) for d in compare(desired=desired, held=held_from_snapshot(pipeline.emu.state()))
    ] == []


def _other(cids: dict[str, str], taken: str) -> str:
    """The conversation whose channel is not ``taken``."""
    (conversation_id,) = [cid for cid, channel in cids.items() if channel != taken]
    return conversation_id


def test_assign_channels_takes_the_first_free_candidate(clean_db: Engine) -> None:
    repo = OutboxRepository(clean_db)

    def ref(channel_id: str) -> ChannelRef:
        return ChannelRef("messaging", channel_id)

    # Given "taken" belongs to another conversation, and "kept" has its channel already
    assert repo.channels.assign_channel("owner", [ref("taken")]) == ref("taken")
    assert repo.channels.assign_channel("kept", [ref("old")]) == ref("old")
    # When a batch asks for channels
    assigned = repo.channels.assign_channels(
        {
            "second": [ref("taken"), ref("second_fallback")],
            "first": [ref("first_choice"), ref("first_fallback")],
            "kept": [ref("new")],
            "stuck": [ref("taken")],
            "twin_a": [ref("dm"), ref("twin_a_fallback")],
            "twin_b": [ref("dm"), ref("twin_b_fallback")],
        }
    )
    # Then each gets its first free candidate; the assigned keeps its channel; the one
    # whose only candidate is taken gets nothing; of twins, one wins the shared id
    twin_ids = sorted(assigned.pop(twin).channel_id for twin in ("twin_a", "twin_b"))
    assert twin_ids in (["dm", "twin_b_fallback"], ["dm", "twin_a_fallback"])
    assert assigned == {
        "second": ref("second_fallback"),
        "first": ref("first_choice"),
        "kept": ref("old"),
    }
    with clean_db.connect() as conn:
        stored = {
            row[0]: row[1]
            for row in conn.execute(select(channel_map.c.conversation_id, channel_map.c.channel_id))
        }
    assert stored == {
        "owner": "taken",
        "kept": "old",
        "second": "second_fallback",
        "first": "first_choice",
        "twin_a": stored["twin_a"],
        "twin_b": stored["twin_b"],
    }
    assert sorted([stored["twin_a"], stored["twin_b"]]) == twin_ids


def test_jobs_of_the_single_conversation_shape_still_work(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given a conversation's job in the older shape (its payload is the conversation's)
    with session_factory() as session, session.begin():
        made = invite(session)
    conversation_id = str(made["conversation"].id)
    claimed = pipeline.repo.claim(100)
    conv_rows = [row.id for row in claimed if row.target_kind == "conversation"]
    pipeline.send_user_job(claimed)
    pipeline.actor.send("conversation", [conversation_id], conv_rows, {})
    # When it runs
    pipeline.drain()
    # Then the channel is made and the rows are done
    channel = pipeline.emu.state()["channels"][f"messaging:invitation_{made['invitation'].id}"]
    assert sorted(channel["members"]) == sorted([str(made["organizer"].id), str(made["guest"].id)])
    assert statuses(pipeline.rows()) == {"done"}
    # Given a channel no map entry names (an older release's), and an old-shape job of
    # a conversation that is gone, its payload naming that channel
    client = pipeline.emu.client()
    client.upsert_users([{"id": "legacy-owner"}])
    client.channel("messaging", "legacy_gone").create("legacy-owner")
    payload = {"channel_type": "messaging", "channel_id": "legacy_gone"}
    pipeline.actor.send("conversation", ["gone-conversation"], [], payload)
    # When it runs
    pipeline.drain()
    # Then the payload was read: the channel is deleted
    assert pipeline.emu.state()["channels"]["messaging:legacy_gone"]["deleted_at"] is not None


def test_a_slow_batch_stops_before_its_locks_lease_runs_out(
    pipeline: Pipeline, session_factory: Callable[[], Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given four conversations claimed as one job, a lock lease of 0.2 s, and Stream
    # taking 150 ms per call: the whole batch would outlive its locks
    with session_factory() as session, session.begin():
        made = converse(session, 4, "slow")
    batch = one_batch(pipeline)
    monkeypatch.setattr(runtime.current().settings, "lock_lease", timedelta(seconds=0.2))
    monkeypatch.setattr(job_runner, "_delay_ms", lambda *_, **__: 1000)
    # (the conversations go in turn, see conversations_in_turn: the lease is checked
    # between them)
    pipeline.emu.set_latency(150)
    # When the job runs once
    run_job(batch.kind, list(batch.target_ids), list(batch.row_ids), batch.payload)
    # Then it stopped after the first conversation and left the rest to a new job
    rows = conversation_rows(pipeline)
    first, rest = batch.target_ids[0], batch.target_ids[1:]
    assert statuses(rows[first]) == {"done"}
    for conversation_id in rest:
        assert statuses(rows[conversation_id]) == {"dispatched"}
        assert all("lock lease" in row["last_error"] for row in rows[conversation_id])
    # And that job finishes them
    pipeline.emu.set_latency(0)
    monkeypatch.undo()
    pipeline.drain()
    assert statuses(pipeline.rows()) == {"done"}
    assert set(channels_of(pipeline.engine, list(made))) == set(made)


def test_a_failed_conversation_keeps_its_error_when_the_rest_of_its_batch_retries(
    pipeline: Pipeline, session_factory: Callable[[], Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three conversations as one job; Stream refuses the first (400) and is
    # unavailable for the second (503)
    with session_factory() as session, session.begin():
        made = converse(session, 3, "kept")
    batch = one_batch(pipeline)
    pipeline.emu.inject_failure("GetOrCreateChannel", 400, code=4, message="refused")
    pipeline.emu.inject_failure("GetOrCreateChannel", 503)
    monkeypatch.setattr(job_runner, "_delay_ms", lambda *_, **__: 300)
    # When the job runs, and then the new job for what it left
    run_job(batch.kind, list(batch.target_ids), list(batch.row_ids), batch.payload)
    pipeline.drain()
    # Then the refused conversation failed with Stream's own error, not the 503 that
    # stopped its batch later, and the other two are in step
    rows = conversation_rows(pipeline)
    refused, *others = batch.target_ids
    assert statuses(rows[refused]) == {"failed"}
    assert all("refused" in row["last_error"] for row in rows[refused])
    for conversation_id in others:
        assert statuses(rows[conversation_id]) == {"done"}
    assert set(channels_of(pipeline.engine, list(made))) == set(made)


def test_a_batch_that_gets_nowhere_is_retried_by_dramatiq(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given two conversations as one job, and Stream unavailable for the first call
    with session_factory() as session, session.begin():
        converse(session, 2, "nowhere")
    batch = one_batch(pipeline)
    pipeline.emu.inject_failure("GetOrCreateChannel", 503)
    # When the job runs once, Then it asks Dramatiq for a retry (it spends its budget)
    with pytest.raises(dramatiq.Retry):
        run_job(batch.kind, list(batch.target_ids), list(batch.row_ids), batch.payload)
    rows = conversation_rows(pipeline)
    for conversation_id in batch.target_ids:
        assert statuses(rows[conversation_id]) == {"dispatched"}
        assert all("HTTP 503" in row["last_error"] for row in rows[conversation_id])


def test_a_batch_in_a_stopping_worker_hands_the_rest_to_a_new_job(
    pipeline: Pipeline, session_factory: Callable[[], Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three conversations as one job, in a worker asked to shut down
    with session_factory() as session, session.begin():
        made = converse(session, 3, "stopping")
    batch = one_batch(pipeline)
    monkeypatch.setattr(job_runner, "_delay_ms", lambda *_, **__: 300)
    stopping = runtime.current().stopping
    stopping.set()
    try:
        # When the job runs
        run_job(batch.kind, list(batch.target_ids), list(batch.row_ids), batch.payload)
    finally:
        stopping.clear()
    # Then it did one conversation and left the others open, for a new job
    rows = conversation_rows(pipeline)
    first, *rest = batch.target_ids
    assert statuses(rows[first]) == {"done"}
    for conversation_id in rest:
        assert statuses(rows[conversation_id]) == {"dispatched"}
        assert all("worker stopping" in row["last_error"] for row in rows[conversation_id])
    # And that job (run by a worker that is not stopping) finishes them
    pipeline.drain()
    assert statuses(pipeline.rows()) == {"done"}
    assert set(channels_of(pipeline.engine, list(made))) == set(made)


def test_a_batch_whose_locks_vanished_settles_nothing_and_runs_again(
    pipeline: Pipeline, session_factory: Callable[[], Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two conversations as one job, and Redis losing the job's locks while it works
    # (a restart without persistence): another job may have overlapped it
    with session_factory() as session, session.begin():
        made = converse(session, 2, "vanished")
    batch = one_batch(pipeline)
    real_reconcile = job_runner.reconcile
    redis = runtime.current().redis

    def reconcile_then_lose_locks(*args: Any, **kwargs: Any) -> Any:
        result = real_reconcile(*args, **kwargs)
        prefix = f"{pipeline.settings.redis_prefix}:lock:conversation:"
        for key in redis.scan_iter(match=f"{prefix}*"):
            redis.delete(key)
        return result

    monkeypatch.setattr(job_runner, "reconcile", reconcile_then_lose_locks)
    # When the job runs, Then it settles nothing and asks for a retry
    with pytest.raises(dramatiq.Retry):
        run_job(batch.kind, list(batch.target_ids), list(batch.row_ids), batch.payload)
    rows = conversation_rows(pipeline)
    for conversation_id in batch.target_ids:
        assert statuses(rows[conversation_id]) == {"dispatched"}
        assert all("locks were lost" in row["last_error"] for row in rows[conversation_id])
    # And the retry (locks kept this time) brings both in step
    monkeypatch.undo()
    pipeline.actor.send(batch.kind, list(batch.target_ids), list(batch.row_ids), batch.payload)
    pipeline.drain()
    assert statuses(pipeline.rows()) == {"done"}
    assert set(channels_of(pipeline.engine, list(made))) == set(made)
