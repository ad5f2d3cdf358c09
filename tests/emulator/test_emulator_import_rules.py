"""Stream's per-item import rules (``docs/migrating/import.md``), the upload limit,
distinct channels and what ``upsert`` keeps, through the real SDK."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from stream_chat import StreamChat

from stream_outbox.emulator import Emulator
from tests.emulator.test_emulator_imports import OLD, errors_of, jsonl, run_import, upload

USERS = (("user", {"id": "ann"}), ("user", {"id": "ben"}))
ROOM = ("channel", {"id": "room", "type": "messaging", "created_by": "ann"})


def msg(message_id: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    data = {"id": message_id, "channel_type": "messaging", "channel_id": "room",
            "user": "ann", "type": "regular", "text": message_id, "created_at": OLD}  # fmt: skip
    return "message", {**data, **fields}


def refused_with(client: StreamChat, *items: tuple[str, dict[str, Any]]) -> list[str]:
    task = run_import(client, jsonl(*items))
    assert task["state"] == "analyze_failed", task
    return errors_of(task)


# ---- uploads -------------------------------------------------------------------------


def test_an_upload_over_32_mb_is_streamed_and_imported(client: StreamChat, fast: Emulator) -> None:
    content = jsonl(*USERS) + b"\n" + b" " * (40 * 1024 * 1024) + b"\n"
    path = upload(client, content)
    task = client.create_import(path, "upsert")["import_task"]
    assert task["size"] == len(content)
    deadline = time.monotonic() + 60
    while task["state"] not in ("completed", "analyze_failed", "failed"):
        assert time.monotonic() < deadline, task
        time.sleep(0.05)
        task = client.get_import(task["id"])["import_task"]
    assert task["state"] == "completed", task
    assert set(fast.state()["users"]) == {"ann", "ben"}


def test_an_upload_over_the_limit_is_refused_as_s3_does(client: StreamChat, fast: Emulator) -> None:
    fast.set_import_options(upload_max_bytes=1000)
    urls = client.create_import_url("big.jsonl")
    answer = requests.put(urls["upload_url"], data=b"x" * 2000, timeout=5)
    assert answer.status_code == 400
    assert "<Code>EntityTooLarge</Code>" in answer.text
    with pytest.raises(Exception, match="no file was uploaded"):
        client.create_import(urls["path"], "upsert")
    assert requests.put(urls["upload_url"], data=jsonl(*USERS), timeout=5).status_code == 200


def test_tasks_run_in_the_order_they_were_created(client: StreamChat, fast: Emulator) -> None:
    first = client.create_import(upload(client, jsonl(*USERS)), "upsert")["import_task"]
    second = client.create_import(upload(client, jsonl(ROOM)), "upsert")["import_task"]
    assert run_import(client, jsonl(msg("m1")))["state"] == "completed"
    states = {t["id"]: t["state"] for t in client.list_imports()["import_tasks"]}
    assert states[first["id"]] == states[second["id"]] == "completed"


# ---- distinct channels -----------------------------------------------------------------


def test_distinct_channels_by_member_ids(client: StreamChat, fast: Emulator) -> None:
    task = run_import(client, jsonl(
        *USERS,
        ("channel", {"member_ids": ["ben", "ann"], "type": "messaging", "created_by": "ann"}),
        ("member", {"channel_type": "messaging", "channel_member_ids": ["ann", "ben"],
                    "user_id": "ben", "last_read": OLD}),
        ("message", {"id": "d1", "channel_type": "messaging", "channel_member_ids": ["ann", "ben"],
                     "user": "ben", "type": "regular", "text": "hi", "created_at": OLD}),
    ))  # fmt: skip
    assert task["state"] == "completed", task
    live = client.channel("messaging", data={"members": ["ann", "ben"]})
    answer = live.create("ann")
    assert answer["channel"]["id"].startswith("!members-")
    assert [m["id"] for m in answer["messages"]] == ["d1"]
    assert {m["user_id"] for m in answer["members"]} == {"ann", "ben"}
    cid = answer["channel"]["cid"]
    assert fast.state()["channels"][cid]["member_records"]["ben"]["last_read"] == OLD


def test_distinct_channel_refusals(client: StreamChat, fast: Emulator) -> None:
    errors = refused_with(client, *USERS,
        ("channel", {"id": "x", "member_ids": ["ann", "ben"], "type": "messaging",
                     "created_by": "ann"}),
        ("channel", {"type": "messaging", "created_by": "ann"}),
        ("channel", {"member_ids": ["ann", "ghost"], "type": "messaging", "created_by": "ann"}),
        ("channel", {"member_ids": [], "type": "messaging", "created_by": "ann"}),
    )  # fmt: skip
    assert errors[:2] == [
        "Validation error: either channel.id or channel.member_ids should be provided, "
        "but not both",
        "Validation error: channel.id or channel.member_ids required, but not both",
    ]
    assert errors[2].startswith("Validation error: member user ghost doesn't exist")
    assert errors[3] == "Validation error: '[]' is not a valid member_ids"


# ---- per-item rules ----------------------------------------------------------------------


def test_custom_data_over_5_kb_per_item(client: StreamChat, fast: Emulator) -> None:
    big = "x" * 5200
    errors = refused_with(client,
        ("user", {"id": "ann", "bio": big}),
        ("user", {"id": "ben", "bio": "x" * 5000}),
        ("channel", {"id": "room", "type": "messaging", "created_by": "ben", "blurb": big}),
        ("channel", {"id": "ok", "type": "messaging", "created_by": "ben"}),
        ("member", {"channel_type": "messaging", "channel_id": "ok", "user_id": "ben",
                    "note": big}),
        ("message", {"id": "m", "channel_type": "messaging", "channel_id": "ok", "user": "ben",
                     "type": "regular", "text": big, "extra": big}),
        ("message", {"id": "fine", "channel_type": "messaging", "channel_id": "ok",
                     "user": "ben", "type": "regular", "text": big}),
        ("reaction", {"message_id": "fine", "type": "like", "user_id": "ben",
                      "created_at": OLD, "note": big}),
    )  # fmt: skip
    assert errors[0] == (
        "Validation error: user custom data is too large: 5210 bytes, the maximum is 5120 (5KB)"
    )
    assert [e.split(" custom data")[0] for e in errors] == [
        "Validation error: user",
        "Validation error: channel",
        "Validation error: member",
        "Validation error: message",
        "Validation error: reaction",
    ]  # fmt: skip  (the 5,000-byte bio and the message's text are not over)


def test_devices_and_future_channel_bans(client: StreamChat, fast: Emulator) -> None:
    good = {"id": "d1", "user_id": "ann", "push_provider_type": "apn", "push_provider_name": "p"}
    errors = refused_with(client, *USERS,
        ("device", good),
        ("device", good),
        ("device", {**good, "id": "d2", "push_provider_type": "pigeon"}),
        ("device", {**good, "id": "d3", "push_provider_name": None}),
        ("device", {**good, "id": "d4", "user_id": "ghost"}),
        ("future_channel_ban", {"created_by": "ann", "target_id": "ben"}),
        ("future_channel_ban", {"created_by": "ann"}),
    )  # fmt: skip
    assert errors[0] == 'Validation error: duplicated device "d1"'
    assert errors[1] == "Validation error: 'pigeon' is not a valid push_provider_type"
    assert errors[2] == 'Validation error: "push_provider_name" required'
    assert errors[3].startswith("Validation error: device user ghost doesn't exist")
    assert errors[4] == 'Validation error: "target_id" required'


def test_message_field_pairings_and_references(client: StreamChat, fast: Emulator) -> None:
    errors = refused_with(client, *USERS, ROOM,
        msg("m1"),
        msg("r1", type="reply"),
        msg("r2", type="reply", parent_id="nope"),
        msg("r3", parent_id="m1"),
        msg("x1", type="deleted"),
        msg("x2", deleted_at=OLD),
        msg("p1", pinned_at=OLD),
        msg("p2", pinned_at=OLD, pinned_by_id="ghost"),
        msg("q1", quoted_message_id="nope"),
        msg("a1", attachments=[{"type": "image"}] * 31),
    )  # fmt: skip
    assert errors == [
        'Validation error: "parent_id" required',
        'Validation error: message "nope" doesn\'t exist (parent_id of message "r2")',
        "Validation error: 'regular' is not a valid type",
        'Validation error: "deleted_at" required',
        "Validation error: 'regular' is not a valid type",
        'Validation error: "pinned_by_id" required',
        'Validation error: pinned_by user ghost doesn\'t exist (message "p2"). please include '
        "all users as separate user entries",
        'Validation error: message "nope" doesn\'t exist (quoted_message_id of message "q1")',
        'Validation error: max "attachments" length exceeded (30)',
    ]


def test_replies_deleted_and_pinned_messages_are_accepted(
    client: StreamChat, fast: Emulator
) -> None:
    task = run_import(client, jsonl(*USERS, ROOM,
        msg("m1"),
        msg("r1", type="reply", parent_id="m1", show_in_channel=True),
        msg("x1", type="deleted", deleted_at=OLD),
        msg("p1", pinned_at=OLD, pinned_by_id="ben", pin_expires="2030-01-01T00:00:00+02:00"),
    ))  # fmt: skip
    assert task["state"] == "completed", task
    assert client.get_message("r1")["message"]["parent_id"] == "m1"


def test_times_need_rfc_3339_with_a_zone(client: StreamChat, fast: Emulator) -> None:
    errors = refused_with(client,
        ("user", {"id": "ann", "created_at": "2019-03-02T15:00:00"}),
        ("user", {"id": "ben", "deactivated_at": "2019-03-02 15:00:00Z"}),
        ("user", {"id": "cy", "created_at": "2019-02-30T15:00:00Z"}),
        ("user", {"id": "dee", "created_at": "1985-04-12T23:20:50.52Z"}),
    )  # fmt: skip
    assert errors == [
        "Validation error: '2019-03-02T15:00:00' is not a valid created_at",
        "Validation error: '2019-03-02 15:00:00Z' is not a valid deactivated_at",
        "Validation error: '2019-02-30T15:00:00Z' is not a valid created_at",
    ]


def test_channel_types_are_the_apps(client: StreamChat, fast: Emulator) -> None:
    errors = refused_with(client, *USERS,
        ("channel", {"id": "c", "type": "nosuchtype", "created_by": "ann"}))  # fmt: skip
    assert errors == ["Validation error: 'nosuchtype' is not a valid channel.type"]


def test_member_invite_times_need_invited(client: StreamChat, fast: Emulator) -> None:
    errors = refused_with(client, *USERS, ROOM,
        ("member", {"channel_type": "messaging", "channel_id": "room", "user_id": "ann",
                    "invite_accepted_at": OLD}),
        ("member", {"channel_type": "messaging", "channel_id": "room", "user_id": "ben",
                    "channel_id_typo": 1, "channel_member_ids": ["ann", "ben"]}),
    )  # fmt: skip
    assert errors[0] == f"Validation error: '{OLD}' is not a valid invite_accepted_at"
    assert errors[1] == (
        "Validation error: either channel_id or channel_member_ids should be provided, but not both"
    )


def test_the_report_keeps_the_first_thousand_errors(client: StreamChat, fast: Emulator) -> None:
    content = b"\n".join(json.dumps({"type": "user", "data": {}}).encode() for _ in range(1005))
    task = run_import(client, content)
    assert task["state"] == "analyze_failed"
    assert len(task["result"]["errors"]) == 1000 and task["result"]["error_count"] == 1005


# ---- upsert and insert ----------------------------------------------------------------


def test_upsert_keeps_the_fields_stream_does_not_upsert(client: StreamChat, fast: Emulator) -> None:
    first = jsonl(
        ("user", {"id": "ann", "channel_mutes": ["messaging:room"], "language": "fr"}),
        ("user", {"id": "ben"}),
        ("channel", {"id": "room", "type": "messaging", "created_by": "ann",
                     "banned_users": ["ben"], "topic": "a"}),
        ("member", {"channel_type": "messaging", "channel_id": "room", "user_id": "ben",
                    "hide_channel": True, "last_read": OLD}),
        msg("m1"),
        ("reaction", {"message_id": "m1", "type": "like", "user_id": "ben", "created_at": OLD}),
    )  # fmt: skip
    assert run_import(client, first)["state"] == "completed"
    again = jsonl(
        ("user", {"id": "ann", "channel_mutes": [], "name": "Ann"}),
        ("channel", {"id": "room", "type": "messaging", "created_by": "ann", "banned_users": []}),
        ("member", {"channel_type": "messaging", "channel_id": "room", "user_id": "ben",
                    "hide_channel": False, "channel_role": "channel_moderator"}),
        msg("m1", text="edited"),
    )  # fmt: skip
    assert run_import(client, again)["state"] == "completed"
    state = fast.state()
    ann = state["users"]["ann"]
    assert ann["channel_mutes"] == ["messaging:room"] and ann["name"] == "Ann"
    assert "language" not in ann  # an upserted field left out is not kept
    channel = state["channels"]["messaging:room"]
    assert channel["data"] == {"banned_users": ["ben"]}  # custom data replaced
    ben = channel["member_records"]["ben"]
    assert ben["hide_channel"] is True and ben["last_read"] == OLD
    assert ben["channel_role"] == "channel_moderator"
    message = client.get_message("m1")["message"]
    assert message["text"] == "edited" and message["reaction_counts"] == {"like": 1}


def test_insert_skips_existing_members_messages_and_reactions(
    client: StreamChat, fast: Emulator
) -> None:
    items = (*USERS, ROOM,
             ("member", {"channel_type": "messaging", "channel_id": "room", "user_id": "ben"}),
             msg("m1"),
             ("reaction", {"message_id": "m1", "type": "like", "user_id": "ben",
                           "created_at": OLD}))  # fmt: skip
    assert run_import(client, jsonl(*items))["state"] == "completed"
    task = run_import(client, jsonl(*items[:-3], msg("m1", text="changed")), "insert")
    assert task["result"]["imported"] == {
        "users": 0, "channels": 0, "members": 0, "messages": 0, "reactions": 0
    }  # fmt: skip
    assert client.get_message("m1")["message"]["text"] == "m1"
