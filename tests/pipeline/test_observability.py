"""Logs and metrics of the pipeline: one line per reconcile, Prometheus figures, no secret."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy.orm import Session

from tests.support.pipeline import Pipeline
from tests.support.settings import API_SECRET
from tests.support.story import invite


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_one_log_line_per_reconcile_with_target_rows_calls_and_outcome(
    pipeline: Pipeline, session_factory: Callable[[], Session], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stream_outbox.worker.pipeline.job_runner")
    with session_factory() as session, session.begin():
        made = invite(session)
    pipeline.drain()
    lines = [r for r in caplog.records if getattr(r, "action", None) == "reconcile"]
    by_kind = {r.kind: r for r in lines}  # type: ignore[attr-defined]
    assert set(by_kind) == {"user", "conversation"}
    line = by_kind["conversation"].getMessage()
    assert str(made["conversation"].id) in line
    assert "done" in line and "rows=1" in line and "stream_calls=" in line and " ms" in line


def test_metrics_count_calls_reconciles_and_outbox_figures(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    calls = sample("stream_outbox_stream_calls_total", endpoint="GetOrCreateChannel", status="200")
    done = sample("stream_outbox_reconciles_total", kind="conversation", outcome="done")
    with session_factory() as session, session.begin():
        invite(session)
    pipeline.relay.sweep()
    assert sample("stream_outbox_pending_rows") == 3
    assert sample("stream_outbox_oldest_pending_age_seconds") >= 0
    pipeline.drain()
    pipeline.relay.sweep()
    assert sample("stream_outbox_pending_rows") == 0
    assert (
        sample("stream_outbox_stream_calls_total", endpoint="GetOrCreateChannel", status="200")
        == calls + 1
    )
    assert sample("stream_outbox_reconciles_total", kind="conversation", outcome="done") == done + 1
    assert sample("stream_outbox_reconcile_seconds_count", kind="conversation") >= 1
    assert b"stream_outbox_relay_dispatched_rows_total" in generate_latest()


def test_the_secret_never_reaches_logs_rows_or_metrics(
    pipeline: Pipeline, session_factory: Callable[[], Session], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pipeline.emu.inject_failure("GetOrCreateChannel", status=401, times=3, code=5)
    pipeline.emu.inject_failure("UpdateUsers", status=503, times=1)
    with session_factory() as session, session.begin():
        invite(session)
    pipeline.drain()
    rows = pipeline.rows()
    assert any(row["status"] == "failed" for row in rows)
    text = "\n".join([caplog.text, repr(rows), generate_latest().decode(), repr(pipeline.settings)])
    assert API_SECRET not in text


@pytest.mark.slow
def test_the_stock_dramatiq_cli_module_declares_the_actor(
    settings_env: dict[str, str],
) -> None:
    code = (
        "import stream_outbox.worker.actors as a; "
        "print(a.reconcile.actor_name, a.reconcile.queue_name)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=settings_env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["reconcile", "stream_outbox"]


@pytest.fixture()
def settings_env(pipeline: Pipeline) -> dict[str, str]:
    import os

    s = pipeline.settings
    return {
        **os.environ,
        "DATABASE_URL": s.database_url,
        "REDIS_URL": s.redis_url,
        "GETSTREAM_API_KEY": s.getstream_api_key or "",
        "GETSTREAM_API_SECRET": API_SECRET,
    }
