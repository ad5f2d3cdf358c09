"""A job's conversations at once when Stream is slow: the same outcome, fewer seconds.

With Stream's calls averaging over 10 ms, a conversation job hands its conversations to
the worker process's pool (``OUTBOX_STREAM_CONCURRENCY``), so their calls overlap; the
per-conversation outcomes, the rows settled and a transient error's retry of what was
left are those of the one-after-the-other path.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from stream_outbox.worker import runtime
from stream_outbox.worker.pipeline import job_runner
from stream_outbox.worker.pipeline.job_runner import run_job
from tests.pipeline.test_batched_conversations import (
    assert_channels_hold,
    conversation_rows,
    converse,
    one_batch,
    statuses,
)
from tests.support.pipeline import Pipeline


def most_at_once(calls: list[dict[str, float]]) -> int:
    """The most calls the emulator was answering at the same moment."""
    edges = sorted([(c["received"], 1) for c in calls] + [(c["answered"], -1) for c in calls])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_a_slow_stream_gets_a_job_s_conversations_at_once(
    pipeline: Pipeline, session_factory: Callable[[], Session], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stream_outbox.worker.pipeline.job_runner")
    # Given Stream answering in 30 ms, and forty conversations in jobs of twenty
    pipeline.emu.set_latency(30)
    pipeline.relay.conversations_per_job = 20
    with session_factory() as session, session.begin():
        made = converse(session, 40, "fan")
    # When the relay dispatches them and the worker runs
    pipeline.drain()
    # Then every channel is in Stream with its members, once, and every row is done
    assert_channels_hold(pipeline, made)
    assert statuses(pipeline.rows()) == {"done"}
    assert pipeline.counts()["GetOrCreateChannel"] == 40
    # And the creates overlapped (a job's conversations went at once)
    assert most_at_once(pipeline.emu.request_log("GetOrCreateChannel")) > 4
    # and each job's log line counts the calls its conversations made on the pool
    counted = [
        int(match.group(1))
        for record in caplog.records
        if getattr(record, "kind", None) == "conversation"
        and (match := re.search(r"stream_calls=(\d+)", record.getMessage()))
    ]
    assert sum(counted) >= 40


def test_a_transient_error_in_a_slow_batch_retries_only_what_was_left(
    pipeline: Pipeline, session_factory: Callable[[], Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Stream answering in 30 ms and allowing two creates before it answers 429
    pipeline.emu.set_latency(30)
    pipeline.emu.set_window(3600)
    with session_factory() as session, session.begin():
        made = converse(session, 8, "slow")
    runtime.current().gateway.upsert_users([{"id": "warm-up"}])  # the gateway has seen 30 ms
    pipeline.emu.set_rate_limit("GetOrCreateChannel", 2)
    monkeypatch.setattr(job_runner, "_delay_ms", lambda *_, **__: 500)
    # When the batch runs once (its conversations at once)
    batch = one_batch(pipeline)
    assert len(batch.target_ids) == 8
    run_job(batch.kind, list(batch.target_ids), list(batch.row_ids), batch.payload)
    # Then its creates overlapped, two conversations are done, the others open for the retry
    assert most_at_once(pipeline.emu.request_log("GetOrCreateChannel")) > 1
    done = [c for c, rows in conversation_rows(pipeline).items() if statuses(rows) == {"done"}]
    assert len(done) == 2
    # When the limit lifts and the rest's new job runs
    pipeline.emu.set_rate_limit("GetOrCreateChannel", None)
    pipeline.drain()
    # Then every conversation converged, each channel created once
    assert statuses(pipeline.rows()) == {"done"}
    assert_channels_hold(pipeline, made)
    by_status = pipeline.emu.request_counts()["by_status"]
    assert by_status["GetOrCreateChannel 429"] >= 1
    assert by_status["GetOrCreateChannel 201"] == 8
