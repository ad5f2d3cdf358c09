"""Channel endpoints through the real SDK."""

from __future__ import annotations

from typing import Any
from unittest.mock import ANY

import pytest
from stream_chat import StreamChat
from stream_chat.base.exceptions import StreamAPIException

from stream_outbox.emulator import Emulator


def _error(exc: pytest.ExceptionInfo[StreamAPIException]) -> tuple[int, Any]:
    return exc.value.status_code, exc.value.error_code


def test_create_returns_stream_shaped_channel(client: StreamChat, users: list[str]):
    ch = client.channel(
        "messaging", "team-1", {"name": "Team", "color": "blue", "members": ["alice", "bob"]}
    )
    state = ch.create("alice")

    channel = state["channel"]
    assert channel["cid"] == "messaging:team-1"
    assert (channel["id"], channel["type"]) == ("team-1", "messaging")
    assert (channel["name"], channel["color"]) == ("Team", "blue")
    assert channel["created_by"]["id"] == "alice"
    assert channel["member_count"] == 2
    assert channel["created_at"] and channel["updated_at"]
    assert channel["deleted_at"] is None
    members = {m["user_id"]: m for m in state["members"]}
    assert set(members) == {"alice", "bob"}
    assert members["alice"]["role"] == "owner"
    assert members["bob"]["channel_role"] == "channel_member"
    assert members["bob"]["user"]["name"] == "Bob"
    assert members["bob"]["created_at"]
    assert state["messages"] == []


def test_created_by_id_in_data_works_too(emu: Emulator, client: StreamChat, users: list[str]):
    client.channel("messaging", "c2", {"created_by_id": "bob"}).query()
    assert emu.state()["channels"]["messaging:c2"]["created_by"] == "bob"


def test_state_endpoint_shape(emu: Emulator, channel: Any):
    assert emu.state()["channels"] == {
        "messaging:general": {
            "type": "messaging",
            "id": "general",
            "data": {"name": "General"},
            "members": ["alice", "bob"],
            "member_records": {
                uid: {
                    "user_id": uid,
                    "role": "owner" if uid == "alice" else "member",
                    "channel_role": "channel_member",
                    "banned": False,
                    "shadow_banned": False,
                    "notifications_muted": False,
                    "created_at": ANY,
                    "updated_at": ANY,
                }
                for uid in ("alice", "bob")
            },
            "created_by": "alice",
            "deleted_at": None,
        }
    }


def test_create_requires_created_by(client: StreamChat, users: list[str]):
    with pytest.raises(StreamAPIException) as caught:
        client.channel("messaging", "nobody").query()
    assert _error(caught) == (400, 4)
    assert "either data.created_by or data.created_by_id" in caught.value.error_message


def test_create_with_unknown_members_names_them(client: StreamChat, users: list[str]):
    with pytest.raises(StreamAPIException) as caught:
        data = {"members": ["alice", "ghost", "phantom"]}
        client.channel("messaging", "c3", data).create("alice")
    assert _error(caught) == (400, 4)
    assert "[ghost phantom]" in caught.value.error_message


def test_get_or_create_leaves_existing_channel_unchanged(emu: Emulator, client, channel):
    again = client.channel("messaging", "general", {"name": "Other", "members": ["carol"]})
    state = again.create("bob")

    assert state["channel"]["name"] == "General"
    assert emu.state()["channels"]["messaging:general"]["members"] == ["alice", "bob"]


@pytest.mark.parametrize("bad_id", ["x" * 65, "has space", "semi;colon", "dot.ted", "bang!"])
def test_invalid_channel_ids_are_rejected(client: StreamChat, users: list[str], bad_id: str):
    with pytest.raises(StreamAPIException) as caught:
        client.channel("messaging", bad_id).create("alice")
    assert _error(caught) == (400, 4)
    assert caught.value.error_message.startswith("GetOrCreateChannel failed with error:")


def test_channel_id_of_64_characters_is_valid(client: StreamChat, users: list[str]):
    cid = "A-_9" + "z" * 60
    assert client.channel("messaging", cid).create("alice")["channel"]["id"] == cid


def test_unknown_channel_type_is_404(client: StreamChat, users: list[str]):
    with pytest.raises(StreamAPIException) as caught:
        client.channel("no-such-type", "x").create("alice")
    assert _error(caught) == (404, 16)


def test_distinct_channel_from_members(client: StreamChat, users: list[str]):
    first = client.channel("messaging", None, {"members": ["alice", "bob"]})
    first.create("alice")
    second = client.channel("messaging", None, {"members": ["bob", "alice"]})
    second.create("bob")
    assert first.id == second.id
    assert first.id.startswith("!members-")


def test_update_replaces_data(emu: Emulator, channel: Any):
    response = channel.update({"name": "Renamed", "topic": "news"})
    assert response["channel"]["name"] == "Renamed"
    assert emu.state()["channels"]["messaging:general"]["data"] == {
        "name": "Renamed",
        "topic": "news",
    }


def test_update_partial_sets_and_unsets(emu: Emulator, channel: Any):
    response = channel.update_partial({"topic": "x", "level": 3}, ["name"])
    assert response["channel"]["topic"] == "x"
    assert emu.state()["channels"]["messaging:general"]["data"] == {"topic": "x", "level": 3}


def test_add_members_by_id_and_object(emu: Emulator, channel: Any):
    response = channel.add_members(["carol"])
    assert {m["user_id"] for m in response["members"]} == {"alice", "bob", "carol"}

    channel.add_members([{"user_id": "dave", "channel_role": "channel_moderator"}])
    members = {m["user_id"]: m for m in channel.query_members({})}
    assert members["dave"]["channel_role"] == "channel_moderator"
    assert emu.state()["channels"]["messaging:general"]["members"] == [
        "alice",
        "bob",
        "carol",
        "dave",
    ]


def test_remove_members(emu: Emulator, channel: Any):
    channel.remove_members(["bob"])
    assert emu.state()["channels"]["messaging:general"]["members"] == ["alice"]


def test_one_update_adds_and_removes_members(emu: Emulator, channel: Any):
    # Stream's UpdateChannel takes add_members and remove_members in one request body
    emu.reset_request_counts()
    response = channel.add_members(["carol"], remove_members=["bob"])
    assert {m["user_id"] for m in response["members"]} == {"alice", "carol"}
    assert emu.state()["channels"]["messaging:general"]["members"] == ["alice", "carol"]
    assert emu.request_counts()["counts"] == {"UpdateChannel": 1}


def test_add_members_limit_is_100(emu: Emulator, client: StreamChat, channel: Any):
    for start in range(0, 101, 100):
        client.upsert_users([{"id": f"m{i}"} for i in range(start, min(start + 100, 101))])
    channel.add_members([f"m{i}" for i in range(100)])
    with pytest.raises(StreamAPIException) as caught:
        channel.add_members([f"m{i}" for i in range(101)])
    assert _error(caught) == (400, 4)
    with pytest.raises(StreamAPIException):
        channel.remove_members([f"m{i}" for i in range(101)])
    assert len(emu.state()["channels"]["messaging:general"]["members"]) == 102


def test_add_unknown_member_fails_and_changes_nothing(emu: Emulator, channel: Any):
    with pytest.raises(StreamAPIException) as caught:
        channel.add_members(["carol", "ghost"])
    assert _error(caught) == (400, 4)
    assert "could not find user ghost from add_members" in caught.value.error_message
    assert emu.state()["channels"]["messaging:general"]["members"] == ["alice", "bob"]


def test_update_unknown_channel_is_404(client: StreamChat, users: list[str]):
    with pytest.raises(StreamAPIException) as caught:
        client.channel("messaging", "missing").add_members(["alice"])
    assert _error(caught) == (404, 16)


def test_soft_delete_then_recreate(emu: Emulator, client: StreamChat, channel: Any):
    deleted = channel.delete()["channel"]
    assert deleted["deleted_at"]
    assert emu.state()["channels"]["messaging:general"]["deleted_at"]
    assert client.query_channels({"cid": "messaging:general"})["channels"] == []
    with pytest.raises(StreamAPIException):
        channel.update({"name": "x"})

    client.channel("messaging", "general", {"members": ["carol"]}).create("carol")
    recreated = emu.state()["channels"]["messaging:general"]
    assert (recreated["deleted_at"], recreated["members"]) == (None, ["carol"])


def test_hard_delete_removes_channel_and_messages(emu: Emulator, channel: Any):
    channel.send_message({"id": "m-1", "text": "hi"}, "alice")
    channel.delete(hard=True)
    state = emu.state()
    assert "messaging:general" not in state["channels"]
    assert "messaging:general" not in state["messages"]


def test_delete_channels_batch(emu: Emulator, client: StreamChat, channel: Any):
    task_id = client.delete_channels(["messaging:general", "messaging:nope"], hard_delete=True)[
        "task_id"
    ]
    task = client.get_task(task_id)
    assert task["status"] == "completed"
    # Stream's DeleteChannelsResult: each cid's status, and an error when not "ok"
    assert task["result"] == {
        "messaging:general": {"status": "ok"},
        "messaging:nope": {"status": "error", "error": "Can't find channel with id messaging:nope"},
    }
    assert emu.state()["channels"] == {}


def test_delete_channels_soft_leaves_the_channels_deleted(
    emu: Emulator, client: StreamChat, channel: Any
):
    task_id = client.delete_channels(["messaging:general"])["task_id"]
    assert client.get_task(task_id)["result"] == {"messaging:general": {"status": "ok"}}
    assert emu.state()["channels"]["messaging:general"]["deleted_at"]
    # deleted already: Stream cannot find it
    again = client.get_task(client.delete_channels(["messaging:general"])["task_id"])["result"]
    assert again["messaging:general"]["status"] == "error"


def _make_channels(client: StreamChat) -> None:
    client.channel("messaging", "a", {"members": ["alice", "bob"], "topic": "x"}).create("alice")
    client.channel("messaging", "b", {"members": ["carol"], "topic": "y"}).create("carol")
    client.channel("team", "c", {"members": ["alice", "carol"]}).create("alice")


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ({"cid": "messaging:a"}, {"messaging:a"}),
        ({"cid": {"$in": ["messaging:a", "team:c"]}}, {"messaging:a", "team:c"}),
        ({"id": "b"}, {"messaging:b"}),
        ({"id": {"$eq": "c"}}, {"team:c"}),
        ({"type": "messaging"}, {"messaging:a", "messaging:b"}),
        ({"members": {"$in": ["carol"]}}, {"messaging:b", "team:c"}),
        ({"members": {"$eq": ["bob", "alice"]}}, {"messaging:a"}),
        ({"members": "bob"}, {"messaging:a"}),
        ({"topic": "y"}, {"messaging:b"}),
        ({"type": "messaging", "members": {"$in": ["alice"]}}, {"messaging:a"}),
        ({"$or": [{"id": "a"}, {"id": "c"}]}, {"messaging:a", "team:c"}),
    ],
)
def test_query_channels_filters(client, users, conditions: dict[str, Any], expected: set[str]):
    _make_channels(client)
    found = client.query_channels(conditions)["channels"]
    assert {c["channel"]["cid"] for c in found} == expected
    assert all("members" in c and "messages" in c for c in found)


def test_query_channels_sort_and_limit(client: StreamChat, users: list[str]):
    _make_channels(client)
    found = client.query_channels({}, {"cid": 1}, limit=2, offset=1)["channels"]
    assert [c["channel"]["cid"] for c in found] == ["messaging:b", "team:c"]


def test_query_channels_by_cid_combines_with_the_other_conditions(client, users):
    # A cid filter reads the channels it names only, the rest of the filter still applies
    _make_channels(client)
    named = {"cid": {"$in": ["messaging:a", "team:c", "messaging:none"]}, "type": "team"}
    assert [c["channel"]["cid"] for c in client.query_channels(named)["channels"]] == ["team:c"]


def test_query_channels_answers_the_100_most_recently_added_members(client, users):
    # Given a channel of 130 members, added one after the other
    ids = [f"m{n:03d}" for n in range(130)]
    client.upsert_users([{"id": uid} for uid in ids[:100]])
    client.upsert_users([{"id": uid} for uid in ids[100:]])
    channel = client.channel("messaging", "big", {"members": ids[:100]})
    channel.create(ids[0])
    channel.add_members(ids[100:])

    # When queried (member_limit: 100 at most, Stream's default)
    found = client.query_channels({"cid": "messaging:big"}, member_limit=500)["channels"][0]

    # Then the answer carries the count, and the 100 newest members, newest first
    assert found["channel"]["member_count"] == 130
    assert [m["user_id"] for m in found["members"]] == ids[::-1][:100]
    small = client.query_channels({"cid": "messaging:big"}, member_limit=3)["channels"][0]
    assert [m["user_id"] for m in small["members"]] == ["m129", "m128", "m127"]


def test_query_members_pages_by_user_id(channel: Any):
    channel.add_members(["carol", "dave", "erin"])
    by_id = [{"field": "user_id", "direction": 1}]
    first = channel.query_members({}, by_id, limit=2)
    rest = channel.query_members({}, by_id, limit=2, user_id_gt=first[-1]["user_id"])
    last = channel.query_members({}, by_id, limit=2, user_id_gt=rest[-1]["user_id"])
    pages = [[m["user_id"] for m in page] for page in (first, rest, last)]
    assert pages == [["alice", "bob"], ["carol", "dave"], ["erin"]]
    below = channel.query_members({}, by_id, user_id_lte="bob", user_id_gte="b")
    assert [m["user_id"] for m in below] == ["bob"]


def test_query_members_filter(channel: Any):
    channel.add_members(["carol"])
    assert [m["user_id"] for m in channel.query_members({"id": {"$in": ["carol", "bob"]}})] == [
        "bob",
        "carol",
    ]
    assert [m["user_id"] for m in channel.query_members({"name": "Alice"})] == ["alice"]
    assert len(channel.query_members({}, limit=1)) == 1


def test_truncate_channel(emu: Emulator, channel: Any):
    channel.send_message({"text": "hello"}, "alice")
    channel.truncate()
    assert emu.state()["messages"] == {}


def test_query_channels_by_last_message_at(client: StreamChat, users: list[str]):
    # Given three channels: one never written in, then two written in one after the other
    for cid in ("quiet", "early", "late"):
        client.channel("messaging", cid, {"members": ["alice"]}).create("alice")
    client.channel("messaging", "early").send_message({"text": "first"}, "alice")
    since = client.channel("messaging", "early").query()["channel"]["last_message_at"]
    client.channel("messaging", "late").send_message({"text": "second"}, "alice")
    # Then each channel says when its newest message came, and a query filters and sorts on it
    quiet = client.channel("messaging", "quiet").query()["channel"]
    assert quiet["last_message_at"] is None
    found = client.query_channels(
        {"last_message_at": {"$gte": since}}, [{"field": "last_message_at", "direction": 1}]
    )
    assert [c["channel"]["id"] for c in found["channels"]] == ["early", "late"]
    later = client.query_channels({"last_message_at": {"$gt": since}})
    assert [c["channel"]["id"] for c in later["channels"]] == ["late"]
