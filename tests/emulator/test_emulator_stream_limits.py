"""Stream's own limits: the published per-minute table, the per-second limit, the API
budget on QueryChannels, and ``GET /rate_limits`` answering them."""

from __future__ import annotations

import time

import jwt
import pytest
import requests
from stream_chat import StreamChat
from stream_chat.base.exceptions import StreamAPIException

from stream_outbox.emulator import Emulator, EmulatorConfig


def _server_side(client: StreamChat, *endpoints: str) -> dict[str, dict[str, int]]:
    answer = client.get_rate_limits(server_side=True, endpoints=list(endpoints))
    assert set(answer) == {"server_side", "duration"}
    limits: dict[str, dict[str, int]] = answer["server_side"]
    return limits


def _start_of_a_second(room: int = 1) -> None:
    """Sleep until just after a second boundary: the calls that follow share a second, and
    the ``room`` seconds from it share a minute (Stream's windows are fixed minutes)."""
    if time.time() % 60 >= 60 - room - 0.5:
        time.sleep(60 - time.time() % 60)  # a fresh minute, rather than straddle one
    time.sleep(1 - time.time() % 1 + 0.01)


def _query_channels(emu: Emulator, http: requests.Session) -> requests.Response:
    token = jwt.encode({"server": True}, emu.api_secret, algorithm="HS256")
    return http.post(
        f"{emu.base_url}/channels",
        params={"api_key": emu.api_key},
        headers={"Authorization": token, "stream-auth-type": "jwt"},
        json={"filter_conditions": {"type": "messaging"}},
        timeout=5,
    )


def test_published_defaults_are_on_by_default(client: StreamChat):
    limits = _server_side(
        client,
        "GetOrCreateChannel",
        "QueryChannels",
        "SendMessage",
        "UpdateUsers",
        "UpdateChannel",
        "DeactivateUser",
        "DeactivateUsers",
        "DeleteUser",
        "DeleteUsers",
        "DeleteChannel",
    )
    assert {name: entry["limit"] for name, entry in limits.items()} == {
        "GetOrCreateChannel": 10_000,
        "QueryChannels": 10_000,
        "SendMessage": 1_000,
        "UpdateUsers": 300,
        "UpdateChannel": 300,
        "DeactivateUser": 60,
        "DeactivateUsers": 60,
        "DeleteUser": 60,
        "DeleteUsers": 60,
        "DeleteChannel": 60,
    }
    assert client.upsert_user({"id": "a"}).rate_limit().limit == 300


def test_get_rate_limits_counts_itself_and_other_platforms_are_untouched(client: StreamChat):
    answer = client.get_rate_limits(
        server_side=True, android=True, endpoints=["GetRateLimits", "SendMessage"]
    )
    assert set(answer) == {"server_side", "android", "duration"}
    assert len(answer["server_side"]) == len(answer["android"]) == 2
    server, android = answer["server_side"]["GetRateLimits"], answer["android"]["GetRateLimits"]
    assert server["limit"] > server["remaining"]
    assert android["limit"] == android["remaining"]
    assert answer["server_side"]["SendMessage"]["remaining"] == 1_000


def test_explicit_limits_override_the_defaults(client: StreamChat):
    with Emulator(rate_limits={"SendMessage": 5, "UpsertUsers": 42}) as emu:
        other = emu.client()
        try:
            limits = _server_side(other, "SendMessage", "UpdateUsers", "QueryChannels")
            assert {k: v["limit"] for k, v in limits.items()} == {
                "SendMessage": 5,
                "UpdateUsers": 42,
                "QueryChannels": 10_000,
            }
        finally:
            other.session.close()


def test_stream_limits_can_be_switched_off():
    config = EmulatorConfig(stream_limits=False, rate_limits={"SendMessage": 5})
    with Emulator.from_config(config) as emu:
        client = emu.client()
        try:
            limits = _server_side(client, "SendMessage", "UpdateUsers")
            assert limits["SendMessage"]["limit"] == 5
            assert limits["UpdateUsers"]["limit"] >= 1_000_000
            for n in range(12):  # no per-second limit either: 12 upserts in a second
                client.upsert_user({"id": f"u{n}"})
        finally:
            client.session.close()


def test_per_second_limit_is_the_minute_over_30(emu: Emulator, client: StreamChat):
    client.upsert_users([{"id": f"u{n}"} for n in range(4)])
    _start_of_a_second(room=2)  # u0 and u1 in one second, u2 in the next, all in one minute
    client.delete_user("u0")  # DeleteUser: 60 a minute, so 2 a second
    client.delete_user("u1")
    with pytest.raises(StreamAPIException) as caught:
        client.delete_user("u2")
    assert (caught.value.status_code, caught.value.error_code) == (429, 9)
    assert emu.state()["users"]["u2"].get("deleted_at") is None
    time.sleep(1 - time.time() % 1 + 0.01)  # the next second
    info = client.delete_user("u2").rate_limit()
    assert (info.limit, info.remaining) == (60, 57)  # the refused call did not count


def test_per_second_refusal_names_the_next_second(
    emu: Emulator, client: StreamChat, http: requests.Session
):
    emu.set_rate_limit("QueryChannels", 60)  # 2 a second
    _start_of_a_second()
    assert _query_channels(emu, http).status_code == 201
    assert _query_channels(emu, http).status_code == 201
    refused = _query_channels(emu, http)
    assert refused.status_code == 429
    assert refused.json()["code"] == 9
    assert refused.headers["X-RateLimit-Limit"] == "60"
    assert refused.headers["X-RateLimit-Remaining"] == "58"  # the minute still has room
    assert int(refused.headers["X-RateLimit-Reset"]) <= int(time.time()) + 1


def test_api_budget_on_query_channels(emu: Emulator, http: requests.Session):
    emu.set_api_budget(250, cost_ms=100)
    first = _query_channels(emu, http)
    assert first.status_code == 201
    assert first.headers["X-Budget-Used-Ms"] == "100"
    assert first.headers["X-Budget-Limit-Ms"] == "250"
    assert first.headers["X-Budget-Remaining-Ms"] == "150"
    assert "Retry-After" not in first.headers
    assert _query_channels(emu, http).headers["X-Budget-Remaining-Ms"] == "50"

    refused = _query_channels(emu, http)
    assert refused.status_code == 429
    assert refused.json()["code"] == 9
    assert "budget" in refused.json()["message"]
    assert refused.headers["X-Budget-Used-Ms"] == "200"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Remaining"] == "9998"  # not a rate-limit refusal


def test_api_budget_window_slides(emu: Emulator, http: requests.Session):
    emu.set_window(1.0)  # the budget's window follows the rate limits'
    emu.set_api_budget(100, cost_ms=100)
    assert _query_channels(emu, http).status_code == 201
    refused = _query_channels(emu, http)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    time.sleep(1.05)
    assert _query_channels(emu, http).status_code == 201


def test_api_budget_is_off_by_default_and_per_config(emu: Emulator, http: requests.Session):
    assert "X-Budget-Used-Ms" not in _query_channels(emu, http).headers
    with Emulator(api_budget_ms=10_000, api_budget_cost_ms=5_000) as budgeted:
        response = _query_channels(budgeted, http)
        assert response.status_code == 201
        assert response.headers["X-Budget-Limit-Ms"] == "10000"
        assert response.headers["X-Budget-Used-Ms"] == "3000"  # a call costs 3,000 ms at most
