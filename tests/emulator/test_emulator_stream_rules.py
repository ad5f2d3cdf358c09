"""Smaller rules of Stream's API: message ids, 5 KB of custom data, 100 members on
create, 201 for POST and PUT, message ids of a re-created channel."""

from __future__ import annotations

from typing import Any

import pytest
from stream_chat import StreamChat
from stream_chat.base.exceptions import StreamAPIException

from stream_outbox.emulator import Emulator

BIG = "x" * 5200  # over 5 KB once encoded


def _error(caught: pytest.ExceptionInfo[StreamAPIException]) -> tuple[int, Any]:
    return caught.value.status_code, caught.value.error_code


@pytest.mark.parametrize("bad_id", ["a,b", "50%", "x" * 256])
def test_message_id_rules(emu: Emulator, channel: Any, bad_id: str):
    with pytest.raises(StreamAPIException) as caught:
        channel.send_message({"id": bad_id, "text": "hi"}, "alice")
    assert _error(caught) == (400, 4)
    assert emu.state()["messages"] == {}


def test_message_id_of_255_characters_is_fine(channel: Any):
    long_id = "m-" + "x" * 253
    assert channel.send_message({"id": long_id, "text": "hi"}, "alice")["message"]["id"] == long_id


def test_custom_data_of_users_is_limited_to_5kb(emu: Emulator, client: StreamChat, users):
    client.upsert_user({"id": "fits", "bio": "x" * 4000})
    with pytest.raises(StreamAPIException) as caught:
        client.upsert_user({"id": "big", "bio": BIG})
    assert _error(caught) == (400, 4)
    assert "5KB" in caught.value.error_message
    with pytest.raises(StreamAPIException) as caught:
        client.update_user_partial({"id": "alice", "set": {"bio": BIG}})
    assert _error(caught) == (400, 4)
    assert "bio" not in emu.state()["users"]["alice"]


def test_custom_data_of_channels_is_limited_to_5kb(emu: Emulator, client: StreamChat, channel):
    with pytest.raises(StreamAPIException) as caught:
        client.channel("messaging", "big", {"blob": BIG}).create("alice")
    assert _error(caught) == (400, 4)
    assert "messaging:big" not in emu.state()["channels"]
    with pytest.raises(StreamAPIException) as caught:
        channel.update_partial({"blob": BIG})
    assert _error(caught) == (400, 4)
    with pytest.raises(StreamAPIException) as caught:
        channel.update({"blob": BIG})
    assert _error(caught) == (400, 4)
    assert emu.state()["channels"]["messaging:general"]["data"] == {"name": "General"}


def test_custom_data_of_messages_is_limited_to_5kb(emu: Emulator, client: StreamChat, channel):
    with pytest.raises(StreamAPIException) as caught:
        channel.send_message({"id": "big", "text": "hi", "blob": BIG}, "alice")
    assert _error(caught) == (400, 4)
    channel.send_message({"id": "m1", "text": "hi", "note": "small"}, "alice")
    with pytest.raises(StreamAPIException) as caught:
        client.update_message_partial("m1", {"set": {"blob": BIG}}, "alice")
    assert _error(caught) == (400, 4)
    assert "blob" not in emu.state()["messages"]["messaging:general"][0]


def test_channel_create_takes_at_most_100_members(emu: Emulator, client: StreamChat):
    client.upsert_users([{"id": f"u{n}"} for n in range(100)])
    client.upsert_user({"id": "u100"})
    everyone = [f"u{n}" for n in range(101)]
    with pytest.raises(StreamAPIException) as caught:
        client.channel("messaging", "crowd", {"members": everyone}).create("u0")
    assert _error(caught) == (400, 4)
    assert "at most 100" in caught.value.error_message
    state = client.channel("messaging", "crowd", {"members": everyone[:100]}).create("u0")
    assert state["channel"]["member_count"] == 100


def test_post_and_put_answer_201_the_others_200(client: StreamChat, channel: Any):
    assert client.upsert_user({"id": "zed"}).status_code() == 201
    assert channel.send_message({"id": "m1", "text": "hi"}, "alice").status_code() == 201
    assert client.query_channels({"cid": channel.cid}).status_code() == 201
    assert channel.query().status_code() == 201
    assert channel.add_members(["carol"]).status_code() == 201
    answer = client.update_message_partial("m1", {"set": {"text": "hello"}}, "alice")
    assert answer.status_code() == 201  # PUT
    assert client.query_users({"id": "zed"}).status_code() == 200  # GET
    assert client.update_user_partial({"id": "zed", "set": {"a": 1}}).status_code() == 200
    assert channel.update_partial({"topic": "x"}).status_code() == 200  # PATCH
    assert client.delete_message("m1").status_code() == 200  # DELETE


def test_recreated_channel_keeps_its_old_message_ids_taken(emu: Emulator, channel: Any):
    channel.send_message({"id": "old-1", "text": "before"}, "alice")
    channel.delete()
    recreated = channel.create("alice")
    assert recreated["messages"] == []  # "If you recreate this channel, it will show up empty"
    with pytest.raises(StreamAPIException) as caught:
        channel.send_message({"id": "old-1", "text": "again"}, "alice")
    assert _error(caught) == (400, 4)
    assert "a message with ID old-1 already exists" in caught.value.error_message
    channel.send_message({"id": "new-1", "text": "after"}, "alice")
    assert [m["id"] for m in emu.state()["messages"]["messaging:general"]] == ["new-1"]


def test_hard_deleted_channel_frees_its_message_ids(channel: Any):
    channel.send_message({"id": "gone-1", "text": "before"}, "alice")
    channel.delete(hard=True)
    channel.create("alice")
    assert channel.send_message({"id": "gone-1", "text": "again"}, "alice")["message"]["id"]
