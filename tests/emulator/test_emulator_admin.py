"""State inspection, reset, request log, lifecycle and the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests
from stream_chat import StreamChat

from stream_outbox.emulator import Emulator
from tests.support.processes import wait_for


def test_state_over_http_matches_python(emu: Emulator, channel: Any, http: requests.Session):
    channel.send_message({"id": "m1", "text": "hi"}, "alice")
    over_http = http.get(f"{emu.base_url}/_emulator/state", timeout=5).json()

    assert over_http == emu.state()
    assert set(over_http) == {"users", "channels", "messages"}
    assert set(over_http["users"]) == {"alice", "bob", "carol", "dave", "erin"}
    assert over_http["messages"]["messaging:general"][0]["id"] == "m1"


def test_reset_over_http_empties_everything(emu: Emulator, channel: Any, http: requests.Session):
    emu.inject_failure("GetApp", 500, times=3)
    assert http.post(f"{emu.base_url}/_emulator/reset", timeout=5).ok

    assert emu.state() == {"users": {}, "channels": {}, "messages": {}}
    assert emu.request_counts() == {"counts": {}, "by_status": {}, "arrived": {}, "total": 0}
    assert http.get(f"{emu.base_url}/_emulator/faults", timeout=5).json()["failures"] == {}


def test_request_log_counts_and_resets(emu: Emulator, client: StreamChat, http: requests.Session):
    client.upsert_users([{"id": "a"}, {"id": "b"}])
    client.upsert_users([{"id": "c"}])
    client.channel("messaging", "x").create("a")
    http.get(f"{emu.base_url}/_emulator/state", timeout=5)  # admin calls are not counted

    log = http.get(f"{emu.base_url}/_emulator/requests", timeout=5).json()
    assert log == {
        "counts": {"UpdateUsers": 2, "GetOrCreateChannel": 1},
        "by_status": {"UpdateUsers 201": 2, "GetOrCreateChannel 201": 1},
        "arrived": {"UpdateUsers": 2, "GetOrCreateChannel": 1},
        "total": 3,
    }
    assert http.post(f"{emu.base_url}/_emulator/requests/reset", timeout=5).ok
    assert emu.request_counts()["total"] == 0
    assert len(emu.state()["users"]) == 3  # state is untouched


def test_a_call_waiting_out_its_latency_has_arrived_but_is_not_answered(
    emu: Emulator, client: StreamChat
) -> None:
    emu.set_latency(800, "UpdateUsers")
    slow = threading.Thread(target=client.upsert_users, args=([{"id": "slow"}],))
    slow.start()
    wait_for(lambda: emu.request_counts()["arrived"].get("UpdateUsers"), "the call", timeout=5)
    assert emu.request_counts()["counts"] == {}
    slow.join(timeout=10)
    assert emu.request_counts()["counts"] == {"UpdateUsers": 1}


def test_unknown_admin_operation_is_404(emu: Emulator, http: requests.Session):
    assert http.get(f"{emu.base_url}/_emulator/nope", timeout=5).status_code == 404
    assert http.get(f"{emu.base_url}/_emulator/health", timeout=5).json()["ok"] is True


def test_get_app_settings(client: StreamChat):
    app = client.get_app_settings()["app"]
    assert "messaging" in app["channel_configs"]


def test_concurrent_clients(emu: Emulator, make_client: Callable[..., StreamChat]):
    emu.set_stream_limits(False)  # 20 upserts at once are over Stream's 10 a second
    clients = [make_client() for _ in range(4)]

    def work(n: int) -> None:
        for batch in range(5):
            users = [{"id": f"t{n}-{batch}-{i}"} for i in range(20)]
            clients[n].upsert_users(users)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(emu.state()["users"]) == 4 * 5 * 20
    assert emu.request_counts()["counts"] == {"UpdateUsers": 20}


def test_start_stop_and_port_errors():
    emulator = Emulator()
    with pytest.raises(RuntimeError):
        _ = emulator.port
    with emulator:
        port = emulator.port
        assert emulator.base_url == f"http://127.0.0.1:{port}"
        with pytest.raises(RuntimeError):
            Emulator(port=port).start()  # address in use
    requests_session = requests.Session()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests_session.get(f"http://127.0.0.1:{port}/_emulator/health", timeout=1)
    requests_session.close()


@pytest.mark.slow
def test_cli_prints_credentials_and_stops_on_ctrl_c():
    process = subprocess.Popen(
        [sys.executable, "-m", "stream_outbox.emulator", "--port", "0", "--api-key", "cli-key"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("Stream emulator listening on http://127.0.0.1:")
        lines = [process.stdout.readline() for _ in range(3)]
        assert any(line.split() == ["api", "key:", "cli-key"] for line in lines)
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=10)
        assert "stopped" in rest
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
