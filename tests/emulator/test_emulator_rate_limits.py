"""Per-endpoint rate limits and the X-RateLimit-* headers."""

from __future__ import annotations

import time

import jwt
import pytest
import requests
from stream_chat import StreamChat
from stream_chat.base.exceptions import StreamAPIException

from stream_outbox.emulator import Emulator


def _get_app(emu: Emulator, http: requests.Session) -> requests.Response:
    token = jwt.encode({"server": True}, emu.api_secret, algorithm="HS256")
    return http.get(
        f"{emu.base_url}/app",
        params={"api_key": emu.api_key},
        headers={"Authorization": token, "stream-auth-type": "jwt"},
        timeout=5,
    )


def test_headers_present_and_large_when_unlimited(emu: Emulator, client: StreamChat):
    info = client.get_app_settings().rate_limit()
    assert info is not None
    assert info.limit == 10_000  # Stream's published default for GetApp
    assert info.remaining == info.limit - 1
    assert info.reset.timestamp() > time.time()

    emu.set_stream_limits(False)
    info = client.get_app_settings().rate_limit()
    assert info.limit >= 1_000_000
    assert info.remaining == info.limit - 1


def test_limit_gives_429_code_9_with_headers(
    emu: Emulator, client: StreamChat, http: requests.Session
):
    emu.set_stream_limits(False)  # the minute's limit alone, without Stream's per-second one
    emu.set_window(3600)  # the calls below must not straddle a window boundary
    emu.set_rate_limit("UpsertUsers", 2)  # alias of Stream's UpdateUsers
    first = client.upsert_user({"id": "a"})
    assert first.rate_limit().limit == 2
    assert first.rate_limit().remaining == 1
    client.upsert_user({"id": "b"})

    with pytest.raises(StreamAPIException) as caught:
        client.upsert_user({"id": "c"})
    assert (caught.value.status_code, caught.value.error_code) == (429, 9)
    assert "Too many requests" in caught.value.error_message
    assert "c" not in emu.state()["users"]
    assert client.get_app_settings().status_code() == 200  # other endpoints unaffected

    emu.set_rate_limit("GetApp", 0)
    limited = _get_app(emu, http)
    assert limited.status_code == 429
    assert limited.headers["X-RateLimit-Limit"] == "0"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert int(limited.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert emu.request_counts()["by_status"]["UpdateUsers 429"] == 1
    assert emu.request_counts()["by_status"]["UpdateUsers 201"] == 2


def _start_of_next_window(seconds: float) -> None:
    """Sleep until just after a window boundary, so a test's calls share one window."""
    time.sleep(seconds - time.time() % seconds + 0.01)


def test_window_resets(emu: Emulator, client: StreamChat):
    emu.set_window(0.3)
    emu.set_rate_limit("GetApp", 1)
    _start_of_next_window(0.3)
    client.get_app_settings()
    with pytest.raises(StreamAPIException):
        client.get_app_settings()
    time.sleep(0.35)
    assert client.get_app_settings().rate_limit().remaining == 0


def test_limits_from_constructor_and_reset_restores_them():
    with Emulator(rate_limits={"GetApp": 1, "UpsertUsers": 7}) as emu:
        client = emu.client()
        try:
            assert client.upsert_user({"id": "u"}).rate_limit().limit == 7
            client.get_app_settings()
            emu.set_rate_limit("GetApp", None)
            client.get_app_settings()
            emu.reset()
            client.get_app_settings()
            with pytest.raises(StreamAPIException):
                client.get_app_settings()
        finally:
            client.session.close()


def test_get_rate_limits_shape(emu: Emulator, client: StreamChat):
    emu.set_rate_limit("SendMessage", 50)
    everything = client.get_rate_limits()
    assert set(everything) >= {"server_side", "android", "ios", "web", "duration"}
    assert "GetOrCreateChannel" in everything["server_side"]

    picked = client.get_rate_limits(server_side=True, endpoints=["SendMessage", "GetApp"])
    assert set(picked) == {"server_side", "duration"}
    assert picked["server_side"]["SendMessage"]["limit"] == 50
    assert set(picked["server_side"]["GetApp"]) == {"limit", "remaining", "reset"}
