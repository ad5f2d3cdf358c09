"""Client-side calls with a user token, as the new frontend makes them: the user acts as
itself, under Stream's default permissions, and its changes reach the webhooks too."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from stream_chat import StreamChat

from stream_outbox.emulator import Emulator
from tests.support.user_client import UserCallError, UserClient
from tests.support.webhook_receiver import WebhookReceiver

CID = "messaging:general"
AsUser = Callable[[str], UserClient]


def _refused(call: Callable[[], Any]) -> tuple[int, Any]:
    with pytest.raises(UserCallError) as caught:
        call()
    return caught.value.status, caught.value.code


def _messages(emu: Emulator) -> list[dict[str, Any]]:
    return emu.state()["messages"].get(CID, [])


def test_a_member_sends_as_itself(emu: Emulator, channel: Any, as_user: AsUser):
    # Given bob, a member, with a user token
    bob = as_user("bob")

    # When he sends a message naming alice as its author
    sent = bob.send_message(CID, {"text": "from the browser", "user": {"id": "alice"}})["message"]

    # Then the message is bob's
    assert (sent["user"]["id"], sent["text"]) == ("bob", "from the browser")
    assert [(m["user_id"], m["text"]) for m in _messages(emu)] == [("bob", "from the browser")]


def test_a_member_updates_and_deletes_its_own_message(emu: Emulator, channel: Any, as_user: AsUser):
    bob = as_user("bob")
    first = bob.send_message(CID, {"id": "b-1", "text": "one"})["message"]
    second = bob.send_message(CID, {"id": "b-2", "text": "two"})["message"]

    bob.update_message({"id": first["id"], "text": "one, edited", "mood": "better"})
    bob.partial_update_message(second["id"], {"text": "two, edited"})
    assert [(m["text"], m.get("mood")) for m in _messages(emu)] == [
        ("one, edited", "better"),
        ("two, edited", None),
    ]

    bob.delete_message(first["id"])
    bob.delete_message(second["id"], hard=True)
    (left,) = _messages(emu)
    assert (left["id"], left["type"]) == ("b-1", "deleted") and left["deleted_at"]


def test_a_member_marks_the_channel_read(emu: Emulator, channel: Any, as_user: AsUser):
    sent = channel.send_message({"id": "a-1", "text": "hi"}, "alice")["message"]

    event = as_user("bob").mark_read(CID)["event"]

    assert (event["type"], event["user"]["id"], event["last_read_message_id"]) == (
        "message.read",
        "bob",
        sent["id"],
    )
    record = emu.state()["channels"][CID]["member_records"]["bob"]
    assert record["last_read"] == event["created_at"]
    assert record["last_read_message_id"] == "a-1"


def test_a_member_watches_and_queries_its_channels(
    client: StreamChat, channel: Any, as_user: AsUser
):
    channel.send_message({"text": "hi"}, "alice")
    other = client.channel("messaging", "elsewhere", {"members": ["alice", "carol"]})
    other.create("alice")
    bob = as_user("bob")

    state = bob.watch(CID)
    assert [m["text"] for m in state["messages"]] == ["hi"]
    assert {m["user_id"] for m in state["members"]} == {"alice", "bob"}

    found = bob.query_channels({"type": "messaging"})["channels"]
    assert [c["channel"]["cid"] for c in found] == [CID]


def test_a_non_member_can_neither_read_nor_send(emu: Emulator, channel: Any, as_user: AsUser):
    carol = as_user("carol")

    assert _refused(lambda: carol.watch(CID)) == (403, 17)
    assert _refused(lambda: carol.send_message(CID, {"text": "let me in"})) == (403, 17)
    assert _refused(lambda: carol.mark_read(CID)) == (403, 17)
    assert _messages(emu) == []
    assert carol.query_channels({"type": "messaging"})["channels"] == []


def test_a_member_cannot_touch_another_s_message(emu: Emulator, channel: Any, as_user: AsUser):
    channel.send_message({"id": "a-1", "text": "alice's"}, "alice")
    bob = as_user("bob")

    assert _refused(lambda: bob.update_message({"id": "a-1", "text": "bob's now"})) == (403, 17)
    assert _refused(lambda: bob.partial_update_message("a-1", {"text": "x"})) == (403, 17)
    assert _refused(lambda: bob.delete_message("a-1")) == (403, 17)
    assert [m["text"] for m in _messages(emu)] == ["alice's"]


def test_a_user_creates_a_channel_of_its_own_and_manages_it(
    emu: Emulator, client: StreamChat, users: list[str], as_user: AsUser
):
    bob = as_user("bob")
    created = bob.watch("messaging:bobs", data={"members": ["bob", "carol"], "created_by_id": "x"})
    assert created["channel"]["created_by"]["id"] == "bob"

    bob.call("POST", "channels/messaging/bobs", {"add_members": ["dave"]})
    assert emu.state()["channels"]["messaging:bobs"]["members"] == ["bob", "carol", "dave"]
    carol = as_user("carol")
    refused = _refused(
        lambda: carol.call("POST", "channels/messaging/bobs", {"add_members": ["erin"]})
    )
    assert refused == (403, 17)


def test_a_user_token_is_refused_on_server_side_endpoints(users: list[str], as_user: AsUser):
    status, code = _refused(lambda: as_user("bob").call("POST", "users", {"users": {}}))
    assert (status, code) == (403, 17)


def test_a_token_signed_with_another_secret_is_refused(
    emu: Emulator, channel: Any, as_user: AsUser
):
    bob = as_user("bob")
    bob.token = jwt.encode({"user_id": "bob"}, "another-secret-of-at-least-32-bytes!", "HS256")
    assert _refused(lambda: bob.send_message(CID, {"text": "x"})) == (401, 43)


def test_an_expired_token_is_refused(emu: Emulator, channel: Any, as_user: AsUser):
    bob = as_user("bob")
    bob.token = jwt.encode({"user_id": "bob", "exp": int(time.time()) - 60}, emu.api_secret)
    assert _refused(lambda: bob.send_message(CID, {"text": "x"})) == (401, 40)


def test_a_token_of_an_unknown_user_is_refused(emu: Emulator, channel: Any, as_user: AsUser):
    assert _refused(lambda: as_user("zoe").watch(CID)) == (401, 5)


def test_client_side_changes_reach_the_webhooks_as_client_requests(
    emu: Emulator, channel: Any, hooked: WebhookReceiver, as_user: AsUser
):
    # Given bob in the browser
    bob = as_user("bob")

    # When he sends, edits, deletes and reads
    sent = bob.send_message(CID, {"text": "one"})["message"]
    bob.partial_update_message(sent["id"], {"text": "uno"})
    bob.delete_message(sent["id"])
    bob.mark_read(CID)

    # Then each is a signed webhook, his, marked as a client request
    assert emu.wait_webhooks()
    events = hooked.events()
    assert [e["type"] for e in events] == [
        "message.new",
        "message.updated",
        "message.deleted",
        "message.read",
    ]
    assert {e["user"]["id"] for e in events} == {"bob"}
    assert {e["request_info"]["type"] for e in events} == {"client"}
    assert events[0]["request_info"]["sdk"].startswith("stream-chat-react")
    assert events[0]["message"]["id"] == sent["id"]
    assert events[-1]["channel"]["cid"] == CID
    request = hooked.received[0]
    assert StreamChat(emu.api_key, emu.api_secret).verify_webhook(
        request.body, request.headers["X-Signature"]
    )


def test_client_side_membership_changes_reach_the_webhooks(
    emu: Emulator, users: list[str], hooked: WebhookReceiver, as_user: AsUser
):
    bob = as_user("bob")
    bob.watch("messaging:bobs", data={"members": ["bob"]})
    bob.call("POST", "channels/messaging/bobs", {"add_members": ["carol"]})
    bob.call("POST", "channels/messaging/bobs", {"remove_members": ["carol"]})

    assert emu.wait_webhooks()
    events = [e for e in hooked.events() if e.get("cid") == "messaging:bobs"]
    assert [e["type"] for e in events] == ["channel.created", "member.added", "member.removed"]
    assert events[0]["user"]["id"] == "bob"
    assert events[1]["member"]["user_id"] == "carol"
