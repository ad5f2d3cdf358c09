"""Message endpoints through the real SDK."""

from __future__ import annotations

from typing import Any

import pytest
from stream_chat import StreamChat
from stream_chat.base.exceptions import StreamAPIException

from stream_outbox.emulator import Emulator


def test_send_message_keeps_client_id(emu: Emulator, channel: Any):
    response = channel.send_message({"id": "msg-1", "text": "Hello", "priority": 2}, "alice")

    message = response["message"]
    assert (message["id"], message["text"], message["type"]) == ("msg-1", "Hello", "regular")
    assert message["user"]["id"] == "alice"
    assert message["cid"] == "messaging:general"
    assert message["priority"] == 2
    stored = emu.state()["messages"]["messaging:general"]
    assert [(m["id"], m["user_id"], m["text"]) for m in stored] == [("msg-1", "alice", "Hello")]


def test_server_assigns_created_at(channel: Any):
    message = channel.send_message(
        {"id": "m-old", "text": "x", "created_at": "2001-01-01T00:00:00Z"}, "alice"
    )["message"]
    assert not message["created_at"].startswith("2001")


def test_duplicate_message_id_is_rejected(emu: Emulator, channel: Any):
    channel.send_message({"id": "dup", "text": "first"}, "alice")
    with pytest.raises(StreamAPIException) as caught:
        channel.send_message({"id": "dup", "text": "second"}, "bob")

    assert (caught.value.status_code, caught.value.error_code) == (400, 4)
    assert caught.value.error_message == (
        'SendMessage failed with error: "a message with ID dup already exists"'
    )
    assert [m["text"] for m in emu.state()["messages"]["messaging:general"]] == ["first"]


def test_message_ids_are_unique_across_channels(client: StreamChat, channel: Any):
    other = client.channel("messaging", "other")
    other.create("alice")
    channel.send_message({"id": "same", "text": "a"}, "alice")
    with pytest.raises(StreamAPIException):
        other.send_message({"id": "same", "text": "b"}, "alice")


def test_get_messages_and_channel_query_return_messages(client: StreamChat, channel: Any):
    for i in range(3):
        channel.send_message({"id": f"m{i}", "text": f"t{i}"}, "bob")

    got = channel.get_messages(["m2", "m0", "missing"])["messages"]
    assert [m["id"] for m in got] == ["m2", "m0"]
    assert client.get_message("m1")["message"]["text"] == "t1"
    state = client.channel("messaging", "general").query()
    assert [m["id"] for m in state["messages"]] == ["m0", "m1", "m2"]
    limited = client.channel("messaging", "general").query(messages={"limit": 1})
    assert [m["id"] for m in limited["messages"]] == ["m2"]


def test_message_from_unknown_user_is_rejected(channel: Any):
    with pytest.raises(StreamAPIException) as caught:
        channel.send_message({"text": "hi"}, "ghost")
    assert (caught.value.status_code, caught.value.error_code) == (400, 4)


def test_message_to_missing_channel_is_404(client: StreamChat, users: list[str]):
    with pytest.raises(StreamAPIException) as caught:
        client.channel("messaging", "missing").send_message({"text": "hi"}, "alice")
    assert (caught.value.status_code, caught.value.error_code) == (404, 16)


def test_too_long_message_uses_code_20(channel: Any):
    with pytest.raises(StreamAPIException) as caught:
        channel.send_message({"text": "x" * 5001}, "alice")
    assert (caught.value.status_code, caught.value.error_code) == (400, 20)


def test_update_with_system_message(emu: Emulator, channel: Any):
    message = {"id": "sys-1", "text": "Carol joined", "user_id": "alice"}
    response = channel.add_members(["carol"], message)
    assert response["message"]["id"] == "sys-1"
    assert emu.state()["messages"]["messaging:general"][0]["text"] == "Carol joined"


def test_partial_update_sets_and_unsets_fields_but_not_the_servers(
    emu: Emulator, client: StreamChat, channel: Any
):
    channel.send_message({"id": "m-edit", "text": "before", "priority": 2}, "alice")

    updated = client.update_message_partial(
        "m-edit", {"set": {"text": "after"}, "unset": ["priority"]}, "alice"
    )["message"]

    assert (updated["text"], updated["user"]["id"], updated["cid"]) == (
        "after",
        "alice",
        "messaging:general",
    )
    assert "priority" not in updated
    assert updated["updated_at"] >= updated["created_at"]
    with pytest.raises(StreamAPIException) as caught:
        client.update_message_partial("m-edit", {"set": {"user_id": "bob"}}, "alice")
    assert (caught.value.status_code, caught.value.error_code) == (400, 4)
    with pytest.raises(StreamAPIException) as missing:
        client.update_message_partial("nope", {"set": {"text": "x"}}, "alice")
    assert (missing.value.status_code, missing.value.error_code) == (404, 16)
    assert [m["text"] for m in emu.state()["messages"]["messaging:general"]] == ["after"]


def test_delete_message_is_soft_unless_hard(emu: Emulator, client: StreamChat, channel: Any):
    channel.send_message({"id": "m-soft", "text": "a"}, "alice")
    channel.send_message({"id": "m-hard", "text": "b"}, "alice")

    soft = client.delete_message("m-soft")["message"]
    client.delete_message("m-hard", hard=True)

    assert (soft["type"], bool(soft["deleted_at"])) == ("deleted", True)
    stored = emu.state()["messages"]["messaging:general"]
    assert [(m["id"], m["type"]) for m in stored] == [("m-soft", "deleted")]
    with pytest.raises(StreamAPIException) as edit:
        client.update_message_partial("m-soft", {"set": {"text": "c"}}, "alice")
    assert edit.value.status_code == 400
    with pytest.raises(StreamAPIException) as gone:
        client.delete_message("m-hard")
    assert (gone.value.status_code, gone.value.error_code) == (404, 16)


def test_undelete_brings_a_soft_deleted_message_back_as_it_was(
    client: StreamChat, channel: Any
) -> None:
    channel.send_message({"id": "m-back", "text": "kept"}, "alice")
    channel.send_message({"id": "m-live", "text": "live"}, "alice")
    client.delete_message("m-back")

    back = client.undelete_message("m-back", "alice")["message"]

    assert (back["type"], back["text"], back.get("deleted_at")) == ("regular", "kept", None)
    client.update_message_partial("m-back", {"set": {"text": "edited"}}, "alice")
    # Refused: a message not deleted, an unknown user, a message Stream does not hold
    for message_id, user_id, status in (
        ("m-live", "alice", 400),
        ("m-back", "nobody", 400),
        ("m-none", "alice", 404),
    ):
        with pytest.raises(StreamAPIException) as refused:
            client.undelete_message(message_id, user_id)
        assert refused.value.status_code == status, (message_id, user_id)
