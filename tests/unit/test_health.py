"""Health checks without services: reports, heartbeats, threads, Stream's answer and the
metrics port's routes (called as a WSGI app)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any
from unittest.mock import ANY

import pytest

from stream_outbox.worker import metrics
from stream_outbox.worker.errors import TransientStreamError
from stream_outbox.worker.health import (
    Check,
    Heartbeat,
    Readiness,
    Report,
    check_stream,
    checks,
    health_app,
    threads_alive,
)
from stream_outbox.worker.settings import Settings
from tests.support.processes import wait_for

SECRET = "a-secret-that-must-never-show-0123456789"


def call(app: Any, path: str, method: str = "GET") -> tuple[str, dict[str, str], bytes]:
    """Call a WSGI app; its status, headers and body."""
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {"PATH_INFO": path, "REQUEST_METHOD": method, "QUERY_STRING": ""}
    body: Iterable[bytes] = app(environ, start_response)
    return seen["status"], seen["headers"], b"".join(body)


def test_a_report_is_healthy_only_when_every_check_is() -> None:
    # Given two passing checks and one failing
    good = Report((Check("database", True, "ok"), Check("redis", True, "ok")))
    bad = Report((*good.checks, Check("stream", False, "GetRateLimits: timed out")))

    # Then the line names every check when healthy, and only the failures otherwise
    assert good.ok and not bad.ok
    assert good.line("ready", "not ready") == "ready: database ok, redis ok"
    assert bad.line("ready", "not ready") == "not ready: stream: GetRateLimits: timed out"
    assert bad.as_json("ready", "not ready") == {
        "status": "not ready",
        "checks": {
            "database": {"ok": True, "detail": "ok"},
            "redis": {"ok": True, "detail": "ok"},
            "stream": {"ok": False, "detail": "GetRateLimits: timed out"},
        },
    }


def test_a_heartbeat_is_alive_after_a_beat_and_not_once_stale() -> None:
    # Given a heartbeat that never beat, Then it is not alive
    heartbeat = Heartbeat("relay", max_age=60)
    assert heartbeat.check() == Check("relay", False, "the loop has not run yet")

    # When the loop beats, Then it is alive
    heartbeat.beat()
    assert heartbeat.check().ok

    # When its last beat is older than the limit, Then it is not
    stale = Heartbeat("relay", max_age=-1)
    stale.beat()
    assert not stale.check().ok
    assert stale.check().detail.startswith("the loop last ran ")


def test_threads_are_alive_only_when_started_and_every_one_runs() -> None:
    # Given no threads, Then not alive
    assert threads_alive("worker", list) == Check("worker", False, "no threads started")

    # Given a running thread and one that ended
    release = threading.Event()
    running = threading.Thread(target=release.wait)
    ended = threading.Thread(target=lambda: None)
    running.start()
    ended.start()
    ended.join()
    try:
        # Then the ended one makes the worker not alive, the running one alone is alive
        assert threads_alive("worker", lambda: [running, ended]) == Check(
            "worker", False, "1 of 2 threads stopped"
        )
        assert threads_alive("worker", lambda: [running]) == Check(
            "worker", True, "1 threads alive"
        )
    finally:
        release.set()
        running.join()


class _Gateway:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def rate_limits(self) -> dict[str, int]:
        if self.error is not None:
            raise self.error
        return {"GetRateLimits": 1000}


def test_the_stream_check_says_why_in_one_line_without_the_secret() -> None:
    # Given Stream answering, Then the check passes
    assert check_stream(_Gateway()) == Check("stream", True, "ok")

    # Given Stream failing with the secret in its text, Then one line, the secret masked
    error = TransientStreamError(f"timed out\nsigned with {SECRET}", endpoint="GetRateLimits")
    found = check_stream(_Gateway(error), [SECRET])
    assert found == Check("stream", False, "GetRateLimits: timed out")
    unexpected = check_stream(_Gateway(RuntimeError(f"odd {SECRET}")), [SECRET])
    assert unexpected == Check("stream", False, "odd ***")


def test_the_metrics_port_serves_health_beside_the_unchanged_metrics() -> None:
    # Given the app of a live process whose Redis is down
    app = health_app(
        lambda: Check("relay", True, "the loop ran 0.1 s ago"),
        lambda: Report((Check("database", True, "ok"), Check("redis", False, "refused"))),
    )

    # Then /healthz is 200 and /readyz 503, each with a JSON body naming its checks
    status, headers, body = call(app, "/healthz")
    assert (status, headers["Content-Type"]) == ("200 OK", "application/json")
    assert json.loads(body)["status"] == "alive"
    status, _, body = call(app, "/readyz")
    assert status == "503 Service Unavailable"
    assert json.loads(body)["checks"]["redis"] == {"ok": False, "detail": "refused"}

    # And every other path is prometheus_client's app, as before
    status, headers, body = call(app, "/metrics")
    assert status == "200 OK"
    assert headers["Content-Type"].startswith("text/plain")
    assert f"# TYPE {metrics.STREAM_CALLS._name}_total counter".encode() in body
    assert call(app, "/healthz", "POST")[0].startswith("405")


def test_a_check_that_never_ends_is_reported_late_and_not_started_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given readiness whose database check blocks until released (Redis answers)
    release, started = threading.Event(), list[str]()

    def stuck(url: str, timeout: float) -> Check:
        started.append(url)
        release.wait()
        return Check("database", True, "ok")

    monkeypatch.setattr(checks, "check_database", stuck)
    monkeypatch.setattr(checks, "check_redis", lambda url, timeout: Check("redis", True, "ok"))
    settings = Settings(database_url="sqlite://", redis_url="redis://127.0.0.1:1/0")
    readiness = Readiness(settings, timeout=0.1, cache_seconds=60, require_stream=False)
    try:
        # When a probe comes, Then it answers, naming the database as late
        late = Check("database", False, "no answer within 0.1 s")
        assert readiness.check().checks == (late, Check("redis", True, "ok"), ANY)

        # When another comes while the check still hangs, Then the same answer, and the
        # database check is not started a second time
        assert readiness.check().checks[0] == late
        assert started == ["sqlite://"]
    finally:
        release.set()

    # When the check ends, Then the next probes run the checks again and say ready
    wait_for(lambda: readiness.check().ok, "ready once the check ended", timeout=10)
    assert len(started) == 2
