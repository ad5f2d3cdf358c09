"""Fault injection: failures, latency, dropped and hanging connections."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests
from stream_chat import StreamChat
from stream_chat.base.exceptions import StreamAPIException

from stream_outbox.emulator import Emulator


def test_fail_next_n_calls(emu: Emulator, client: StreamChat):
    emu.inject_failure("UpdateUsers", 500, times=2)
    for _ in range(2):
        with pytest.raises(StreamAPIException) as caught:
            client.upsert_user({"id": "u1"})
        assert (caught.value.status_code, caught.value.error_code) == (500, -1)
    client.upsert_user({"id": "u1"})

    assert emu.request_counts()["by_status"] == {"UpdateUsers 500": 2, "UpdateUsers 201": 1}
    assert list(emu.state()["users"]) == ["u1"]


def test_injected_failure_with_custom_code_and_any_endpoint(emu: Emulator, client: StreamChat):
    emu.inject_failure(None, 503, times=1, code=99, message="maintenance")
    with pytest.raises(StreamAPIException) as caught:
        client.get_app_settings()
    assert (caught.value.status_code, caught.value.error_code) == (503, 99)
    assert "maintenance" in caught.value.error_message
    client.get_app_settings()


def test_latency_per_endpoint_and_global(emu: Emulator, client: StreamChat):
    emu.set_latency(150, endpoint="GetApp")
    started = time.perf_counter()
    client.get_app_settings()
    assert time.perf_counter() - started >= 0.15
    started = time.perf_counter()
    client.query_users({})
    assert time.perf_counter() - started < 0.15

    emu.set_latency(100)
    started = time.perf_counter()
    client.query_users({})
    assert time.perf_counter() - started >= 0.1


def test_drop_connection_raises_connection_error(emu: Emulator, client: StreamChat):
    emu.drop_connections("UpdateUsers", times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        client.upsert_user({"id": "u1"})
    assert emu.state()["users"] == {}
    client.upsert_user({"id": "u1"})
    assert emu.request_counts()["by_status"] == {"UpdateUsers dropped": 1, "UpdateUsers 201": 1}


def test_drop_after_applying_loses_only_the_response(emu: Emulator, client: StreamChat):
    emu.drop_connections("UpdateUsers", times=1, apply=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        client.upsert_user({"id": "u1"})
    assert list(emu.state()["users"]) == ["u1"]


def test_get_requests_are_retried_once_by_the_sdk(emu: Emulator, client: StreamChat):
    emu.drop_connections("GetApp", times=1)
    assert client.get_app_settings().status_code() == 200  # urllib3 retried the GET
    emu.drop_connections("GetApp", times=2)
    with pytest.raises(requests.exceptions.ConnectionError):
        client.get_app_settings()


def test_hang_longer_than_client_timeout(emu: Emulator, make_client: Callable[..., StreamChat]):
    impatient = make_client(timeout=0.3)
    emu.hang("UpdateUsers", seconds=1.0, times=1)
    started = time.perf_counter()
    with pytest.raises(requests.exceptions.Timeout):
        impatient.upsert_user({"id": "u1"})
    assert time.perf_counter() - started < 0.9
    assert emu.request_counts()["by_status"] == {"UpdateUsers hung": 1}
    impatient.upsert_user({"id": "u2"})  # a new connection is served normally
    assert list(emu.state()["users"]) == ["u2"]


def test_hang_with_apply_changes_state_after_the_wait(
    emu: Emulator, make_client: Callable[..., StreamChat]
):
    impatient = make_client(timeout=0.2)
    emu.hang("UpdateUsers", seconds=0.4, apply=True)
    with pytest.raises(requests.exceptions.Timeout):
        impatient.upsert_user({"id": "late"})
    deadline = time.monotonic() + 3
    while "late" not in emu.state()["users"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "late" in emu.state()["users"]


def test_clear_faults(emu: Emulator, client: StreamChat):
    emu.inject_failure("GetApp", 500, times=5)
    emu.drop_connections("QueryUsers", times=5)
    emu.set_latency(1000)
    emu.clear_faults()
    client.get_app_settings()
    client.query_users({})


def test_faults_over_admin_http(emu: Emulator, client: StreamChat, http: requests.Session):
    base = f"{emu.base_url}/_emulator"
    assert http.post(f"{base}/faults/fail", json={"endpoint": "GetApp", "status": 502}).ok
    assert http.post(f"{base}/faults/drop", json={"endpoint": "QueryUsers", "times": 2}).ok
    assert http.post(f"{base}/faults/latency", json={"ms": 5, "endpoint": "GetApp"}).ok
    hang = {"endpoint": "SendMessage", "seconds": 1, "times": 1}
    assert http.post(f"{base}/faults/hang", json=hang).ok
    faults = http.get(f"{base}/faults").json()
    assert faults["failures"]["GetApp"][0]["status"] == 502
    assert faults["interruptions"]["QueryUsers"][0]["times"] == 2
    assert faults["endpoint_latency_ms"] == {"GetApp": 5.0}

    with pytest.raises(StreamAPIException) as caught:
        client.get_app_settings()
    assert caught.value.status_code == 502
    with pytest.raises(requests.exceptions.ConnectionError):
        client.query_users({})

    assert http.post(f"{base}/faults/clear").ok
    assert http.get(f"{base}/faults").json()["interruptions"] == {}
    client.query_users({})
    assert http.post(f"{base}/faults/fail", json={"endpoint": "GetApp"}).status_code == 400
    assert http.post(f"{base}/faults/fail", json={"status": 200}).status_code == 400


def test_rate_limits_over_admin_http(emu: Emulator, client: StreamChat, http: requests.Session):
    base = f"{emu.base_url}/_emulator"
    body = {"endpoint": "GetApp", "limit": 1, "window_seconds": 30}
    answer = http.post(f"{base}/rate_limits", json=body).json()
    assert answer["window_seconds"] == 30.0
    assert answer["limits"] == {"GetApp": 1}
    assert (answer["stream_limits"], answer["api_budget_ms"]) == (True, None)
    assert answer["in_force"]["GetApp"] == 1
    assert answer["in_force"]["SendMessage"] == 1000  # Stream's default
    client.get_app_settings()
    with pytest.raises(StreamAPIException):
        client.get_app_settings()
    http.post(f"{base}/rate_limits", json={"endpoint": "GetApp", "limit": None})
    client.get_app_settings()

    off = http.post(f"{base}/rate_limits", json={"stream_limits": False}).json()
    assert (off["stream_limits"], off["in_force"]) == (False, {})
    budget = {"api_budget_ms": 500, "api_budget_cost_ms": 50}
    on = http.post(f"{base}/rate_limits", json=budget).json()
    assert (on["api_budget_ms"], on["api_budget_cost_ms"]) == (500.0, 50.0)
