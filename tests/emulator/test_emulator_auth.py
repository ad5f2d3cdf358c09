"""Authentication and the error body, as the real service does them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import jwt
import pytest
import requests
from stream_chat import StreamChat
from stream_chat.base.exceptions import StreamAPIException

from stream_outbox.emulator import Emulator


def test_wrong_secret_is_401_code_43_with_stream_error_body(
    make_client: Callable[..., StreamChat],
):
    bad = make_client(api_secret="a-different-secret-also-32-bytes-long")
    with pytest.raises(StreamAPIException) as caught:
        bad.upsert_user({"id": "u1"})

    assert (caught.value.status_code, caught.value.error_code) == (401, 43)
    body = json.loads(caught.value.response_text)
    assert set(body) >= {"code", "message", "StatusCode", "duration", "more_info"}
    assert body["StatusCode"] == 401
    assert body["duration"].endswith("ms")
    assert body["more_info"] == "https://getstream.io/chat/docs/api_errors_response"
    assert body["message"].startswith('UpdateUsers failed with error: "JWTAuth error: signature')


def test_wrong_api_key_is_401_code_2(make_client: Callable[..., StreamChat]):
    with pytest.raises(StreamAPIException) as caught:
        make_client(api_key="other-key").get_app_settings()
    assert (caught.value.status_code, caught.value.error_code) == (401, 2)
    assert "api_key is invalid" in caught.value.error_message


def _raw(emu: Emulator, http: requests.Session, headers: dict[str, str], **query: str):
    params = {"api_key": emu.api_key, **query}
    return http.get(f"{emu.base_url}/app", params=params, headers=headers, timeout=5)


def test_missing_token_is_401_code_5(emu: Emulator, http: requests.Session):
    response = _raw(emu, http, {"stream-auth-type": "jwt"})
    assert response.status_code == 401
    assert response.json()["code"] == 5


def test_missing_api_key_is_401_code_2(emu: Emulator, http: requests.Session):
    token = jwt.encode({"server": True}, emu.api_secret, algorithm="HS256")
    response = http.get(
        f"{emu.base_url}/app",
        headers={"Authorization": token, "stream-auth-type": "jwt"},
        timeout=5,
    )
    assert (response.status_code, response.json()["code"]) == (401, 2)


def test_missing_auth_type_header_is_401_code_5(emu: Emulator, http: requests.Session):
    token = jwt.encode({"server": True}, emu.api_secret, algorithm="HS256")
    response = _raw(emu, http, {"Authorization": token})
    assert (response.status_code, response.json()["code"]) == (401, 5)
    assert "stream-auth-type missing or invalid" in response.json()["message"]


def test_garbage_token_is_401_code_5(emu: Emulator, http: requests.Session):
    response = _raw(emu, http, {"Authorization": "not-a-jwt", "stream-auth-type": "jwt"})
    assert (response.status_code, response.json()["code"]) == (401, 5)


def test_expired_token_is_401_code_40(emu: Emulator, http: requests.Session):
    token = jwt.encode({"server": True, "exp": int(time.time()) - 60}, emu.api_secret, "HS256")
    response = _raw(emu, http, {"Authorization": token, "stream-auth-type": "jwt"})
    assert (response.status_code, response.json()["code"]) == (401, 40)


def test_user_token_of_a_user_stream_does_not_know_is_401_code_5(
    emu: Emulator, http: requests.Session
):
    token = jwt.encode({"user_id": "alice"}, emu.api_secret, algorithm="HS256")
    response = _raw(emu, http, {"Authorization": token, "stream-auth-type": "jwt"})
    assert (response.status_code, response.json()["code"]) == (401, 5)


def test_user_token_acts_client_side(emu: Emulator, client: StreamChat, http: requests.Session):
    client.upsert_user({"id": "alice"})
    token = jwt.encode({"user_id": "alice"}, emu.api_secret, algorithm="HS256")
    headers = {"Authorization": token, "stream-auth-type": "jwt"}
    assert _raw(emu, http, headers).status_code == 200  # GetApp is open to clients
    refused = http.post(
        f"{emu.base_url}/users", params={"api_key": emu.api_key}, headers=headers, json={}
    )
    assert (refused.status_code, refused.json()["code"]) == (403, 17)


def test_token_with_neither_server_nor_user_id_is_401_code_5(emu: Emulator, http: requests.Session):
    token = jwt.encode({"role": "admin"}, emu.api_secret, algorithm="HS256")
    response = _raw(emu, http, {"Authorization": token, "stream-auth-type": "jwt"})
    assert (response.status_code, response.json()["code"]) == (401, 5)


def test_valid_token_with_time_claims_is_accepted(emu: Emulator, http: requests.Session):
    now = int(time.time())
    token = jwt.encode({"server": True, "iat": now - 5, "exp": now + 60}, emu.api_secret, "HS256")
    response = _raw(emu, http, {"Authorization": token, "stream-auth-type": "jwt"})
    assert response.status_code == 200
    assert response.json()["app"]["name"] == "stream-emulator"


def test_failed_auth_is_counted(emu: Emulator, make_client: Callable[..., StreamChat]):
    with pytest.raises(StreamAPIException):
        make_client(api_key="nope").get_app_settings()
    assert emu.request_counts()["by_status"] == {"GetApp 401": 1}


def test_unknown_route_is_404_code_16(emu: Emulator, client: StreamChat):
    with pytest.raises(StreamAPIException) as caught:
        client.get("no/such/endpoint")
    assert (caught.value.status_code, caught.value.error_code) == (404, 16)


def test_invalid_json_body_is_400(emu: Emulator, http: requests.Session):
    token = jwt.encode({"server": True}, emu.api_secret, algorithm="HS256")
    response = http.post(
        f"{emu.base_url}/users",
        params={"api_key": emu.api_key},
        headers={"Authorization": token, "stream-auth-type": "jwt"},
        data=b"{not json",
        timeout=5,
    )
    assert (response.status_code, response.json()["code"]) == (400, 4)
