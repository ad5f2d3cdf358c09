"""The client protocol over real sockets: a user's WebSocket (``GET /connect``), its first
``health.check``, refused connections, watching channels and the events watchers get,
server-side changes (the stream-chat SDK's) included, and CORS for the browser's page."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import jwt
import pytest
import requests
from stream_chat import StreamChat

from stream_outbox.emulator import Emulator
from tests.support.user_client import UserCallError, UserClient
from tests.support.ws_client import Socket, connect_url, open_socket

CID = "messaging:general"
AsUser = Callable[[str], UserClient]
WRONG_SECRET = "another-secret-of-at-least-32-bytes!"


@pytest.fixture
def online(emu: Emulator, as_user: AsUser) -> Callable[..., Any]:
    """Connect a user's WebSocket: ``with online("bob") as (bob, socket): ...``; the user's
    REST calls then carry the connection's id."""

    @contextmanager
    def make(user_id: str, **details: Any) -> Iterator[tuple[UserClient, Socket]]:
        user = as_user(user_id)
        with open_socket(connect_url(emu.base_url, emu.api_key, user_id, user.token, details)) as s:
            user.connection_id = s.connection_id
            yield user, s

    return make


def _eventually(check: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Whether ``check`` holds within ``timeout`` (a closed socket is seen a moment later)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _refusal(emu: Emulator, token: str, api_key: str | None = None) -> tuple[Any, ...]:
    """What a refused connection gets: its error event, then the close code."""
    with open_socket(connect_url(emu.base_url, api_key or emu.api_key, "bob", token)) as s:
        error = s.first["error"]
        with pytest.raises(Exception, match="1000"):
            s.receive()
        return error["code"], error["StatusCode"], s.ws.close_code


def test_connect_answers_a_health_check_with_the_connection_and_me(
    emu: Emulator, users: list[str], online: Callable[..., Any]
):
    with online("bob", name="Bobby", role="admin", image="b.png") as (_, socket):
        first = socket.first

        assert first["type"] == "health.check" and first["connection_id"]
        me = first["me"]
        assert (me["id"], me["name"], me["image"], me["role"]) == ("bob", "Bobby", "b.png", "user")
        assert me["online"] is True
        assert (me["channel_mutes"], me["mutes"], me["devices"]) == ([], [], [])
        assert (me["total_unread_count"], me["unread_channels"]) == (0, 0)
        assert emu.state()["users"]["bob"]["name"] == "Bobby"  # upserted as on connect

    assert _eventually(lambda: emu.state()["users"]["bob"]["online"] is False)


def test_connect_creates_a_user_that_does_not_exist(emu: Emulator, online: Callable[..., Any]):
    with online("newcomer", name="New") as (_, socket):
        assert socket.first["me"]["name"] == "New"
    assert emu.state()["users"]["newcomer"]["role"] == "user"


def test_the_client_s_health_checks_are_answered(users: list[str], online: Callable[..., Any]):
    with online("bob") as (_, socket):
        socket.ws.send("not json")  # ignored, as is a binary frame
        socket.ws.send(b"\x00\x01")
        socket.ws.send('[{"type": "health.check", "client_id": "bob--x"}]')
        answer = socket.next("health.check")
        assert answer["connection_id"] == socket.connection_id


def test_bad_tokens_and_keys_get_an_error_then_close_1000(
    emu: Emulator, client: StreamChat, users: list[str]
):
    wrong = jwt.encode({"user_id": "bob"}, WRONG_SECRET, "HS256")
    expired = jwt.encode({"user_id": "bob", "exp": int(time.time()) - 60}, emu.api_secret, "HS256")
    other = jwt.encode({"user_id": "alice"}, emu.api_secret, "HS256")

    assert _refusal(emu, wrong) == (43, 401, 1000)
    assert _refusal(emu, expired) == (40, 401, 1000)  # the client fetches a new token
    assert _refusal(emu, client.create_token("bob"), api_key="nope") == (2, 401, 1000)
    assert _refusal(emu, other) == (5, 401, 1000)  # a token of another user


def test_deactivated_and_deleted_users_cannot_connect(
    emu: Emulator, client: StreamChat, users: list[str]
):
    client.deactivate_user("bob")
    client.delete_user("carol")

    assert _refusal(emu, client.create_token("bob")) == (17, 403, 1000)
    with open_socket(
        connect_url(emu.base_url, emu.api_key, "carol", client.create_token("carol"))
    ) as s:
        assert (s.first["error"]["code"], s.first["error"]["StatusCode"]) == (16, 404)
    assert "carol" not in [c["user_id"] for c in emu.connections()]


def test_a_watcher_gets_a_server_side_message_live(
    emu: Emulator, channel: Any, online: Callable[..., Any]
):
    with online("bob") as (bob, socket):
        state = bob.watch(CID)
        assert state["watcher_count"] == 1
        assert state["membership"]["user_id"] == "bob"
        assert "send-message" in state["channel"]["own_capabilities"]
        assert state["channel"]["config"]["typing_events"] is True

        # the outbox worker's send: server-side, by the stream-chat SDK
        channel.send_message({"id": "srv-1", "text": "from the app"}, "alice")

        event = socket.next("message.new")
        assert (event["cid"], event["message"]["id"], event["message"]["text"]) == (
            CID,
            "srv-1",
            "from the app",
        )
        assert event["user"]["id"] == "alice" and event["message"]["user"]["name"] == "Alice"
        assert (event["watcher_count"], event["unread_count"], event["unread_channels"]) == (
            1,
            1,
            1,
        )
        assert "members" not in event and "request_info" not in event


def test_the_sender_s_own_connection_gets_its_message_too(channel: Any, online: Callable[..., Any]):
    with online("bob") as (bob, bob_socket), online("alice") as (alice, alice_socket):
        bob.watch(CID)
        alice.watch(CID)

        sent = bob.send_message(CID, {"text": "hello"})["message"]

        assert alice_socket.next("message.new")["message"]["id"] == sent["id"]
        own = bob_socket.next("message.new")
        assert own["message"]["id"] == sent["id"] and own["unread_count"] == 0


def test_typing_read_edit_and_delete_reach_the_other_watcher(
    channel: Any, online: Callable[..., Any]
):
    with online("bob") as (bob, _), online("alice") as (alice, socket):
        bob.watch(CID)
        alice.watch(CID)

        answer = bob.send_event(CID, {"type": "typing.start", "parent_id": None})["event"]
        assert answer["type"] == "typing.start" and answer["user"]["id"] == "bob"
        assert socket.next("typing.start")["user"]["id"] == "bob"
        bob.send_event(CID, {"type": "typing.stop"})
        assert socket.next("typing.stop")["cid"] == CID

        sent = bob.send_message(CID, {"id": "b-1", "text": "one"})["message"]
        bob.mark_read(CID)
        read = socket.next("message.read")
        assert (read["user"]["id"], read["last_read_message_id"]) == ("bob", sent["id"])

        bob.update_message({"id": "b-1", "text": "one, edited"})
        edited = socket.next("message.updated")["message"]
        assert edited["text"] == "one, edited" and edited["message_text_updated_at"]
        bob.delete_message("b-1")
        deleted = socket.next("message.deleted")
        assert (deleted["message"]["id"], deleted["message"]["type"]) == ("b-1", "deleted")


def test_member_and_channel_events_reach_watchers(
    client: StreamChat, channel: Any, online: Callable[..., Any]
):
    with online("bob") as (bob, socket):
        bob.watch(CID)

        channel.add_members(["carol"])
        assert socket.next("member.added")["member"]["user_id"] == "carol"
        channel.update_partial({"topic": "plans"})
        assert socket.next("channel.updated")["channel"]["topic"] == "plans"


def test_stop_watching_and_a_closed_socket_end_the_events(
    emu: Emulator, channel: Any, online: Callable[..., Any], as_user: AsUser, http: Any
):
    with online("bob") as (bob, socket):
        bob.watch(CID)
        socket.next("user.watching.start")
        assert emu.watching(CID) == ["bob"]
        listed = http.get(f"{emu.base_url}/_emulator/connections").json()["connections"]
        assert listed == [
            {"connection_id": socket.connection_id, "user_id": "bob", "watching": [CID]}
        ]
        bob.stop_watching(CID)
        assert emu.watching(CID) == []

        channel.send_message({"text": "nobody watches"}, "alice")

        # a member not watching is only notified
        assert [e["type"] for e in socket.quiet()] == ["notification.message_new"]
    with online("bob") as (bob, _):
        assert bob.watch(CID)["watcher_count"] == 1
    assert _eventually(lambda: emu.watching(CID) == [])
    assert as_user("alice").watch(CID)["watcher_count"] == 0


def test_query_channels_with_watch_registers_the_connection(
    channel: Any, online: Callable[..., Any]
):
    with online("bob") as (bob, socket):
        found = bob.query_channels({"cid": CID})["channels"]
        assert found[0]["watcher_count"] == 1

        channel.send_message({"text": "seen"}, "alice")
        assert socket.next("message.new")["message"]["text"] == "seen"


def test_another_user_s_connection_id_watches_nothing(
    channel: Any, online: Callable[..., Any], as_user: AsUser
):
    with online("bob") as (_, socket):
        alice = as_user("alice")
        alice.connection_id = socket.connection_id
        assert alice.watch(CID)["watcher_count"] == 0


def test_a_non_member_cannot_send_events(channel: Any, as_user: AsUser):
    with pytest.raises(UserCallError) as refused:
        as_user("carol").send_event(CID, {"type": "typing.start"})
    assert (refused.value.status, refused.value.code) == (403, 17)


def test_cors_preflight_and_headers(emu: Emulator, http: requests.Session):
    asked = "authorization,stream-auth-type,x-stream-client,x-client-request-id,content-type"
    preflight = http.options(
        f"{emu.base_url}/channels/messaging/general/query",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": asked,
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == asked

    answer = http.get(f"{emu.base_url}/app", params={"api_key": "nope"})
    assert answer.status_code == 401
    assert answer.headers["access-control-allow-origin"] == "*"


def test_watchers_are_listed_and_a_closed_socket_is_seen_leaving(
    channel: Any, online: Callable[..., Any]
):
    with online("alice") as (alice, socket):
        alice.watch(CID)
        socket.next("user.watching.start")  # her own
        with online("bob") as (bob, _):
            state = bob.watch(CID)
            assert [w["id"] for w in state["watchers"]] == ["alice", "bob"]
            joined = socket.next("user.watching.start")
            assert (joined["user"]["id"], joined["watcher_count"]) == ("bob", 2)

        left = socket.next("user.watching.stop")
        assert (left["user"]["id"], left["watcher_count"]) == ("bob", 1)
        assert left["user"]["online"] is False


def test_a_thread_reply_goes_live_and_stays_in_its_thread(
    channel: Any, online: Callable[..., Any], as_user: AsUser, hooked: Any, emu: Emulator
):
    with online("bob") as (bob, socket):
        bob.watch(CID)
        parent = bob.send_message(CID, {"id": "p-1", "text": "start a thread"})["message"]

        bob.send_message(CID, {"id": "r-1", "text": "in the thread", "parent_id": parent["id"]})

        live = socket.next("message.new", timeout=3)
        while live["message"]["id"] != "r-1":
            live = socket.next("message.new")
        assert (live["message"]["parent_id"], live["message"]["type"]) == ("p-1", "reply")
        parent_now = socket.next("message.updated")["message"]  # for watchers only
        assert (parent_now["id"], parent_now["reply_count"]) == ("p-1", 1)
    replies = bob.call("GET", "messages/p-1/replies")["messages"]
    assert [m["id"] for m in replies] == ["r-1"]
    state = as_user("alice").watch(CID)
    assert [(m["id"], m["reply_count"]) for m in state["messages"]] == [("p-1", 1)]
    assert emu.wait_webhooks()
    assert "message.updated" not in [e["type"] for e in hooked.events()]


def test_members_not_watching_are_notified(emu: Emulator, channel: Any, online: Callable[..., Any]):
    with online("bob") as (_, bob_socket), online("carol") as (carol, carol_socket):
        # a member's connection that does not watch the channel hears of its messages
        channel.send_message({"id": "n-1", "text": "while you were away"}, "alice")
        note = bob_socket.next("notification.message_new")
        assert (note["cid"], note["message"]["id"], note["channel"]["cid"]) == (CID, "n-1", CID)
        assert (note["unread_count"], note["unread_channels"]) == (1, 1)

        # a user added hears of it, and a member removed too, and stops watching
        channel.add_members(["carol"])
        added = carol_socket.next("notification.added_to_channel")
        assert (added["cid"], added["member"]["user_id"]) == (CID, "carol")
        carol.watch(CID)
        channel.remove_members(["carol"])
        removed = carol_socket.next("notification.removed_from_channel")
        assert (removed["cid"], removed["member"]["user_id"]) == (CID, "carol")
        assert emu.watching(CID) == []
