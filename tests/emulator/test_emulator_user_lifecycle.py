"""A user's lifecycle as Stream enforces it: deleted ids refused until restored, soft
deletes leaving every channel, hard deletes keeping the id taken, deactivated users
unable to send, batch endpoints of 100 ids answering async tasks."""

from __future__ import annotations

import time
from typing import Any

import pytest
from stream_chat import StreamChat
from stream_chat.base.exceptions import StreamAPIException

from stream_outbox.emulator import Emulator


def _refused(caught: pytest.ExceptionInfo[StreamAPIException]) -> tuple[int, Any, str]:
    return caught.value.status_code, caught.value.error_code, caught.value.error_message


def _member_count(client: StreamChat, channel_id: str) -> int:
    count: int = client.channel("messaging", channel_id).query()["channel"]["member_count"]
    return count


@pytest.fixture
def rooms(client: StreamChat, users: list[str]) -> list[str]:
    """Two channels with bob in both."""
    for room, members in (("room-1", ["alice", "bob", "carol"]), ("room-2", ["bob", "dave"])):
        client.channel("messaging", room, {"members": members}).create("alice")
    return ["room-1", "room-2"]


def test_upsert_of_a_soft_deleted_user_is_refused_until_restored(
    emu: Emulator, client: StreamChat, users: list[str]
):
    client.delete_user("bob")
    with pytest.raises(StreamAPIException) as caught:
        client.upsert_users([{"id": "new-user"}, {"id": "bob", "name": "Bob again"}])
    assert _refused(caught) == (
        404,
        16,
        'UpdateUsers failed with error: "the user bob was deleted"',
    )
    assert "new-user" not in emu.state()["users"]  # the whole batch fails

    with pytest.raises(StreamAPIException) as caught:
        client.update_user_partial({"id": "bob", "set": {"name": "x"}})
    assert _refused(caught)[:2] == (404, 16)
    assert "the user bob was deleted" in caught.value.error_message

    client.restore_users(["bob"])
    assert client.upsert_user({"id": "bob", "name": "Back"})["users"]["bob"]["name"] == "Back"


def test_soft_delete_leaves_every_channel_and_restore_does_not_rejoin(
    emu: Emulator, client: StreamChat, rooms: list[str]
):
    assert [_member_count(client, room) for room in rooms] == [3, 2]
    client.delete_user("bob")
    assert [_member_count(client, room) for room in rooms] == [2, 1]
    assert all("bob" not in c["members"] for c in emu.state()["channels"].values())

    client.restore_users(["bob"])
    assert "deleted_at" not in emu.state()["users"]["bob"]
    assert [_member_count(client, room) for room in rooms] == [2, 1]


def test_batch_soft_delete_leaves_channels_too(emu: Emulator, client: StreamChat, rooms):
    task_id = client.delete_users(["bob", "dave"], "soft")["task_id"]
    assert client.get_task(task_id)["result"] == {"bob": {"status": "ok"}, "dave": {"status": "ok"}}
    assert emu.state()["channels"]["messaging:room-2"]["members"] == []
    assert emu.state()["channels"]["messaging:room-1"]["members"] == ["alice", "carol"]


def test_hard_deleted_user_is_gone_but_its_id_stays_taken(
    emu: Emulator, client: StreamChat, rooms: list[str]
):
    client.channel("messaging", "room-1").send_message({"id": "by-bob", "text": "hi"}, "bob")
    client.delete_user("bob", hard_delete=True)
    state = emu.state()
    assert "bob" not in state["users"]
    assert all("bob" not in c["members"] for c in state["channels"].values())
    assert state["messages"] == {}  # its messages went with it

    with pytest.raises(StreamAPIException) as caught:
        client.upsert_user({"id": "bob"})
    assert _refused(caught) == (
        404,
        16,
        'UpdateUsers failed with error: "the user bob was deleted"',
    )
    with pytest.raises(StreamAPIException) as caught:
        client.restore_users(["bob"])  # restores are for soft deletes
    assert _refused(caught)[:2] == (404, 16)


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_deleted_user_cannot_be_member_creator_or_author(
    client: StreamChat, rooms: list[str], mode: str
):
    client.delete_user("carol", hard_delete=mode == "hard")

    with pytest.raises(StreamAPIException) as caught:
        client.channel("messaging", "new", {"members": ["alice", "carol"]}).create("alice")
    assert _refused(caught) == (
        404,
        16,
        'GetOrCreateChannel failed with error: "the user carol was deleted"',
    )
    with pytest.raises(StreamAPIException) as caught:
        client.channel("messaging", "by-carol").create("carol")
    assert _refused(caught)[:2] == (404, 16)
    with pytest.raises(StreamAPIException) as caught:
        client.channel("messaging", "room-2").add_members(["carol"])
    assert _refused(caught) == (
        404,
        16,
        'UpdateChannel failed with error: "the user carol was deleted"',
    )
    with pytest.raises(StreamAPIException) as caught:
        client.channel("messaging", "room-1").send_message({"text": "hi"}, "carol")
    assert _refused(caught) == (
        404,
        16,
        'SendMessage failed with error: "the user carol was deleted"',
    )


def test_deactivated_user_cannot_send_until_reactivated(
    emu: Emulator, client: StreamChat, rooms: list[str]
):
    room = client.channel("messaging", "room-1")
    client.deactivate_user("carol")
    with pytest.raises(StreamAPIException) as caught:
        room.send_message({"id": "m1", "text": "hi"}, "carol")
    assert _refused(caught) == (
        403,
        17,
        'SendMessage failed with error: "the user carol is deactivated"',
    )
    assert emu.state()["messages"] == {}
    client.channel("messaging", "room-2").add_members(["carol"])  # still a possible member

    client.reactivate_user("carol")
    assert room.send_message({"id": "m1", "text": "hi"}, "carol")["message"]["id"] == "m1"


def test_deactivate_users_takes_at_most_100_ids(client: StreamChat, users: list[str]):
    with pytest.raises(StreamAPIException) as caught:
        client.deactivate_users([f"u{n}" for n in range(101)])
    assert _refused(caught)[:2] == (400, 4)
    assert "at most 100" in caught.value.error_message
    task = client.get_task(client.deactivate_users(["carol", "dave"])["task_id"])
    assert task["status"] == "completed"
    # the result lists the users, each with its deactivated_at
    listed = task["result"]["users"]
    assert [user["id"] for user in listed] == ["carol", "dave"]
    assert all(user["deactivated_at"] for user in listed)


def test_async_tasks_are_pending_then_running_then_completed(
    emu: Emulator, client: StreamChat, users: list[str]
):
    emu.set_task_seconds(0.6)
    task_id = client.delete_users(["carol"], "soft")["task_id"]
    assert emu.state()["users"]["carol"]["deleted_at"]  # marked deleted at once
    first = client.get_task(task_id)
    assert first["status"] == "pending"
    assert "result" not in first
    time.sleep(0.35)
    assert client.get_task(task_id)["status"] == "running"
    time.sleep(0.35)
    done = client.get_task(task_id)
    assert (done["status"], done["result"]) == ("completed", {"carol": {"status": "ok"}})


def test_batch_endpoints_share_stream_limits(client: StreamChat, users: list[str]):
    answer = client.get_rate_limits(server_side=True, endpoints=["DeleteUsers", "DeactivateUsers"])
    assert {k: v["limit"] for k, v in answer["server_side"].items()} == {
        "DeleteUsers": 60,
        "DeactivateUsers": 60,
    }
    time.sleep(1 - time.time() % 1 + 0.01)  # the calls below share a second
    client.delete_users(["alice"], "soft")
    client.deactivate_users(["bob"])  # an endpoint of its own
    client.delete_users(["carol"], "soft")
    with pytest.raises(StreamAPIException) as caught:
        client.delete_users(["dave"], "soft")  # 60 a minute is 2 a second
    assert _refused(caught)[:2] == (429, 9)


def test_hard_delete_in_batch_needs_hard_messages_and_conversations(
    emu: Emulator, client: StreamChat, rooms: list[str]
):
    with pytest.raises(StreamAPIException) as caught:
        client.delete_users(["dave"], "hard", messages="hard")
    assert _refused(caught)[:2] == (400, 4)
    client.delete_users(["dave"], "hard", messages="hard", conversations="hard")
    state = emu.state()
    assert "dave" not in state["users"]
    assert "messaging:room-2" not in state["channels"]  # bob and dave's conversation
