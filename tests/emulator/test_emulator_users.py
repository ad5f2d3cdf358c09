"""User endpoints through the real SDK."""

from __future__ import annotations

import pytest
from stream_chat import StreamChat
from stream_chat.base.exceptions import StreamAPIException

from stream_outbox.emulator import Emulator


def test_upsert_returns_users_keyed_by_id_and_stores_them(emu: Emulator, client: StreamChat):
    response = client.upsert_users([{"id": "u1", "name": "One", "plan": "pro"}, {"id": "u-2@x"}])

    assert set(response["users"]) == {"u1", "u-2@x"}
    assert response["users"]["u1"]["name"] == "One"
    assert response["users"]["u1"]["role"] == "user"
    assert response["duration"].endswith("ms")
    assert emu.state()["users"]["u1"]["plan"] == "pro"


def test_upsert_replaces_custom_data_and_keeps_created_at(emu: Emulator, client: StreamChat):
    first = client.upsert_user({"id": "u1", "name": "One", "color": "red"})["users"]["u1"]
    second = client.upsert_user({"id": "u1", "name": "Uno"})["users"]["u1"]

    assert second["name"] == "Uno"
    assert "color" not in second
    assert second["created_at"] == first["created_at"]


def test_upsert_accepts_100_users_and_rejects_101(emu: Emulator, client: StreamChat):
    client.upsert_users([{"id": f"ok-{i}"} for i in range(100)])
    with pytest.raises(StreamAPIException) as caught:
        client.upsert_users([{"id": f"big-{i}"} for i in range(101)])

    assert caught.value.status_code == 400
    assert caught.value.error_code == 4
    assert "at most 100" in caught.value.error_message
    assert not any(uid.startswith("big-") for uid in emu.state()["users"])


@pytest.mark.parametrize("bad_id", ["has space", "semi;colon", "a/b", "é", "x" * 256])
def test_invalid_user_id_fails_the_whole_batch(emu: Emulator, client: StreamChat, bad_id: str):
    with pytest.raises(StreamAPIException) as caught:
        client.upsert_users([{"id": "fine"}, {"id": bad_id}])

    assert (caught.value.status_code, caught.value.error_code) == (400, 4)
    assert caught.value.error_message.startswith("UpdateUsers failed with error:")
    assert emu.state()["users"] == {}


def test_user_id_of_255_allowed_characters_is_valid(client: StreamChat):
    long_id = "a@_-" + "b" * 251
    assert long_id in client.upsert_user({"id": long_id})["users"]


def test_partial_update_sets_and_unsets(client: StreamChat, users: list[str]):
    client.update_user_partial({"id": "alice", "set": {"city": "Oslo"}, "unset": ["name"]})

    found = client.query_users({"id": "alice"})["users"][0]
    assert found["city"] == "Oslo"
    assert "name" not in found


def test_partial_update_of_unknown_user_is_404(client: StreamChat):
    with pytest.raises(StreamAPIException) as caught:
        client.update_user_partial({"id": "ghost", "set": {"a": 1}})
    assert (caught.value.status_code, caught.value.error_code) == (404, 16)


def test_query_users_filters_sorts_and_pages(client: StreamChat, users: list[str]):
    found = client.query_users({"id": {"$in": ["bob", "alice", "nobody"]}}, {"id": 1})["users"]
    assert [u["id"] for u in found] == ["alice", "bob"]

    by_name = client.query_users({"name": "Carol"})["users"]
    assert [u["id"] for u in by_name] == ["carol"]

    page = client.query_users({}, {"id": -1}, limit=2, offset=1)["users"]
    assert [u["id"] for u in page] == ["dave", "carol"]


def test_deactivate_and_reactivate(client: StreamChat, users: list[str]):
    deactivated = client.deactivate_user("bob")["user"]
    assert deactivated["deactivated_at"]
    assert "bob" not in [u["id"] for u in client.query_users({})["users"]]
    included = client.query_users({"id": "bob"}, include_deactivated_users=True)["users"]
    assert [u["id"] for u in included] == ["bob"]

    reactivated = client.reactivate_user("bob")["user"]
    assert "deactivated_at" not in reactivated
    assert "bob" in [u["id"] for u in client.query_users({})["users"]]


def test_deactivate_users_batch_returns_completed_task(client: StreamChat, users: list[str]):
    task_id = client.deactivate_users(["carol", "dave"])["task_id"]
    assert client.get_task(task_id)["status"] == "completed"
    assert client.query_users({"id": {"$in": ["carol", "dave"]}})["users"] == []


def test_deactivate_unknown_user_is_404(client: StreamChat):
    with pytest.raises(StreamAPIException) as caught:
        client.deactivate_user("ghost")
    assert (caught.value.status_code, caught.value.error_code) == (404, 16)


def test_delete_user_soft_then_hard(emu: Emulator, client: StreamChat, channel, users):
    soft = client.delete_user("bob")["user"]
    assert soft["deleted_at"]
    assert emu.state()["users"]["bob"]["deleted_at"]
    assert client.query_users({"id": "bob"})["users"] == []

    client.delete_user("alice", hard_delete=True)
    state = emu.state()
    assert "alice" not in state["users"]
    assert "alice" not in state["channels"]["messaging:general"]["members"]


def test_delete_users_batch_and_restore(emu: Emulator, client: StreamChat, users: list[str]):
    task_id = client.delete_users(["carol", "dave"], "soft")["task_id"]
    task = client.get_task(task_id)
    assert task["status"] == "completed"
    assert task["result"] == {"carol": {"status": "ok"}, "dave": {"status": "ok"}}
    assert emu.state()["users"]["carol"]["deleted_at"]

    client.restore_users(["carol"])
    assert "deleted_at" not in emu.state()["users"]["carol"]

    client.delete_users(["erin"], "hard", messages="hard", conversations="hard")
    assert "erin" not in emu.state()["users"]


def test_delete_users_rejects_more_than_100(client: StreamChat, users: list[str]):
    with pytest.raises(StreamAPIException) as caught:
        client.delete_users([f"u{i}" for i in range(101)], "soft")
    assert (caught.value.status_code, caught.value.error_code) == (400, 4)
