"""Stream's Import API through the real SDK: upload URL, PUT, import task, polling."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from stream_chat import StreamChat
from stream_chat.base.exceptions import StreamAPIException

from stream_outbox.emulator import Emulator

FINAL = {"completed", "analyze_failed", "failed"}
OLD = "2019-03-02T15:00:00Z"


def jsonl(*items: tuple[str, dict[str, Any]]) -> bytes:
    """An import file: one ``{"type", "data"}`` object per line."""
    return "\n".join(json.dumps({"type": t, "data": d}) for t, d in items).encode()


def happy_file() -> bytes:
    return jsonl(
        ("user", {"id": "ann", "name": "Ann", "created_at": "2017-01-01T01:00:00Z"}),
        ("user", {"id": "ben", "name": "Ben"}),
        ("device", {"id": "d1", "user_id": "ann", "push_provider_type": "firebase",
                    "push_provider_name": "fcm"}),
        ("channel", {"id": "old-room", "type": "messaging", "created_by": "ann",
                     "name": "Old room", "created_at": "2017-01-02T00:00:00Z"}),
        ("member", {"channel_type": "messaging", "channel_id": "old-room", "user_id": "ann",
                    "channel_role": "channel_moderator", "created_at": "2017-02-01T02:00:00Z"}),
        ("member", {"channel_type": "messaging", "channel_id": "old-room", "user_id": "ben",
                    "last_read": "2019-03-02T15:00:00Z"}),
        ("message", {"id": "m-2", "channel_type": "messaging", "channel_id": "old-room",
                     "user": "ben", "text": "second", "type": "regular", "created_at": OLD,
                     "source": "legacy"}),
        ("message", {"id": "m-1", "channel_type": "messaging", "channel_id": "old-room",
                     "user": "ann", "text": "first", "type": "regular",
                     "created_at": "2018-01-01T00:00:00Z"}),
        ("reaction", {"message_id": "m-1", "type": "love", "user_id": "ben", "created_at": OLD}),
    )  # fmt: skip


def upload(client: StreamChat, content: bytes, filename: str = "data.jsonl") -> str:
    urls = client.create_import_url(filename)
    answer = requests.put(urls["upload_url"], data=content, timeout=5)
    assert answer.status_code == 200
    return str(urls["path"])


def run_import(client: StreamChat, content: bytes, mode: str = "upsert") -> dict[str, Any]:
    """Upload, create the task and poll it until it ends; return the final task."""
    task = client.create_import(upload(client, content), mode)["import_task"]
    deadline = time.monotonic() + 5
    while task["state"] not in FINAL:
        assert time.monotonic() < deadline, task
        time.sleep(0.005)
        task = client.get_import(task["id"])["import_task"]
    return dict(task)


def errors_of(task: dict[str, Any]) -> list[str]:
    return [e["error"] for e in task["result"]["errors"]]


# ---- the calls -------------------------------------------------------------------


def test_upload_url_path_and_task_fields(client: StreamChat, emu: Emulator) -> None:
    urls = client.create_import_url("my-data.jsonl")
    assert urls["upload_url"].startswith(emu.base_url + "/_emulator/uploads/")
    assert urls["upload_url"].endswith("/my-data.jsonl")
    assert urls["path"].startswith("s3://stream-import/") and urls["path"].endswith(
        "/my-data.jsonl"
    )
    requests.put(urls["upload_url"], data=happy_file(), timeout=5).raise_for_status()
    task = client.create_import(urls["path"], "upsert")["import_task"]
    assert task["state"] == "uploaded"
    assert task["mode"] == "upsert" and task["path"] == urls["path"]
    assert task["size"] == len(happy_file())
    assert {"id", "created_at", "updated_at", "history"} <= set(task)
    assert client.get_import(task["id"])["import_task"]["id"] == task["id"]


def test_polling_goes_through_the_states(client: StreamChat, emu: Emulator) -> None:
    emu.set_import_options(state_seconds=0.15)
    task = client.create_import(upload(client, happy_file()), "upsert")["import_task"]
    seen = [task["state"]]
    while seen[-1] != "completed":
        time.sleep(0.01)
        state = client.get_import(task["id"])["import_task"]["state"]
        if state != seen[-1]:
            seen.append(state)
    assert seen == ["uploaded", "analyzing", "importing", "completed"]
    history = client.get_import(task["id"])["import_task"]["history"]
    assert [(h["prev_state"], h["next_state"]) for h in history] == [
        ("uploaded", "analyzing"),
        ("analyzing", "importing"),
        ("importing", "completed"),
    ]


def test_nothing_is_applied_before_completed(client: StreamChat, emu: Emulator) -> None:
    emu.set_import_options(state_seconds=60)
    client.create_import(upload(client, happy_file()), "upsert")
    assert emu.state()["users"] == {}
    assert emu.import_tasks()[0]["state"] == "uploaded"


def test_list_imports_newest_first_with_limit_and_offset(
    client: StreamChat, fast: Emulator
) -> None:
    ids = [client.create_import(upload(client, happy_file()), "upsert")["import_task"]["id"]
           for _ in range(3)]  # fmt: skip
    listed = client.list_imports()["import_tasks"]
    assert [t["id"] for t in listed] == ids[::-1]
    assert [t["id"] for t in client.list_imports({"limit": 1, "offset": 1})["import_tasks"]] == [
        ids[1]
    ]


def test_create_import_needs_a_known_uploaded_path_and_a_mode(client: StreamChat) -> None:
    with pytest.raises(StreamAPIException) as err:
        client.create_import("s3://stream-import/nowhere/x.jsonl", "upsert")
    assert err.value.status_code == 400
    urls = client.create_import_url("empty.jsonl")
    with pytest.raises(StreamAPIException):  # never PUT
        client.create_import(urls["path"], "upsert")
    path = upload(client, happy_file())
    with pytest.raises(StreamAPIException):
        client.create_import(path, "replace")  # type: ignore[arg-type]
    with pytest.raises(StreamAPIException) as missing:
        client.get_import("no-such-task")
    assert missing.value.status_code == 404


def test_upload_url_needs_no_auth_but_a_known_token(client: StreamChat, emu: Emulator) -> None:
    assert requests.put(emu.base_url + "/_emulator/uploads/nope/x.jsonl", data=b"{}",
                        timeout=5).status_code == 404  # fmt: skip


# ---- applying ----------------------------------------------------------------------


def test_happy_path_keeps_ids_and_times(client: StreamChat, fast: Emulator) -> None:
    task = run_import(client, happy_file())
    assert task["state"] == "completed", task
    assert task["result"]["errors"] == []
    assert task["result"]["stats"]["total"] == {
        "users": 2, "channels": 1, "members": 2, "messages": 2, "reactions": 1
    }  # fmt: skip
    state = fast.state()
    assert state["users"]["ann"]["created_at"] == "2017-01-01T01:00:00Z"
    channel = state["channels"]["messaging:old-room"]
    assert channel["created_by"] == "ann" and channel["data"] == {"name": "Old room"}
    assert channel["members"] == ["ann", "ben"]
    records = channel["member_records"]
    assert records["ann"]["channel_role"] == "channel_moderator"
    assert records["ann"]["created_at"] == "2017-02-01T02:00:00Z"
    assert records["ben"]["last_read"] == OLD
    messages = state["messages"]["messaging:old-room"]
    assert [(m["id"], m["created_at"]) for m in messages] == [
        ("m-1", "2018-01-01T00:00:00Z"),
        ("m-2", OLD),
    ]
    assert messages[1]["source"] == "legacy" and messages[1]["user_id"] == "ben"

    found = client.query_channels({"cid": "messaging:old-room"})["channels"]
    assert found[0]["channel"]["created_at"] == "2017-01-02T00:00:00Z"
    assert [m["id"] for m in found[0]["messages"]] == ["m-1", "m-2"]
    assert found[0]["messages"][1]["created_at"] == OLD
    assert client.get_message("m-1")["message"]["reaction_counts"] == {"love": 1}


def test_references_may_point_at_existing_data(client: StreamChat, fast: Emulator) -> None:
    client.upsert_user({"id": "zoe"})
    client.channel("messaging", "live").create("zoe")
    task = run_import(client, jsonl(
        ("member", {"channel_type": "messaging", "channel_id": "live", "user_id": "zoe"}),
        ("message", {"id": "x1", "channel_type": "messaging", "channel_id": "live",
                     "user": "zoe", "type": "regular", "text": "hi", "created_at": OLD}),
    ))  # fmt: skip
    assert task["state"] == "completed", task
    assert fast.state()["messages"]["messaging:live"][0]["created_at"] == OLD


def test_upsert_overwrites_and_insert_skips(client: StreamChat, fast: Emulator) -> None:
    client.upsert_user({"id": "ann", "name": "Before", "team_color": "red"})
    task = run_import(client, jsonl(("user", {"id": "ann", "name": "Insert"})), "insert")
    assert task["state"] == "completed" and task["mode"] == "insert"
    assert task["result"]["imported"]["users"] == 0
    assert fast.state()["users"]["ann"]["name"] == "Before"

    task = run_import(client, jsonl(("user", {"id": "ann", "name": "Upsert"})), "upsert")
    assert task["result"]["imported"]["users"] == 1
    user = fast.state()["users"]["ann"]
    assert user["name"] == "Upsert" and "team_color" not in user  # custom data replaced


def test_upsert_keeps_a_members_last_read(client: StreamChat, fast: Emulator) -> None:
    assert run_import(client, happy_file())["state"] == "completed"
    again = jsonl(("member", {"channel_type": "messaging", "channel_id": "old-room",
                              "user_id": "ben", "last_read": "2020-01-01T00:00:00Z",
                              "channel_role": "channel_moderator"}))  # fmt: skip
    assert run_import(client, again)["state"] == "completed"
    record = fast.state()["channels"]["messaging:old-room"]["member_records"]["ben"]
    assert record["last_read"] == OLD  # last_read is not an upserted field
    assert record["channel_role"] == "channel_moderator"


# ---- refusals ---------------------------------------------------------------------


def refused(client: StreamChat, emu: Emulator, content: bytes) -> list[dict[str, Any]]:
    task = run_import(client, content)
    assert task["state"] == "analyze_failed", task
    assert emu.state()["users"] == {}  # nothing of a failed file is applied
    return list(task["result"]["errors"])


def test_channel_id_too_long(client: StreamChat, fast: Emulator) -> None:
    errors = refused(client, fast, jsonl(
        ("user", {"id": "ann"}),
        ("channel", {"id": "x" * 65, "type": "messaging", "created_by": "ann"}),
    ))  # fmt: skip
    assert errors[0]["error"] == "Validation error: max channelID length exceeded (64)"
    assert errors[0]["line"] == 2 and errors[0]["item_type"] == "channel"


def test_invalid_ids_and_fields(client: StreamChat, fast: Emulator) -> None:
    errors = refused(client, fast, jsonl(
        ("user", {"id": "ann"}),
        ("user", {"name": "no id"}),
        ("channel", {"id": "bad!id", "type": "messaging", "created_by": "ann"}),
        ("channel", {"id": "ok", "type": "messaging", "created_by": "ann"}),
        ("message", {"id": "a,b", "channel_type": "messaging", "channel_id": "ok",
                     "user": "ann", "type": "regular"}),
        ("message", {"id": "m" * 256, "channel_type": "messaging", "channel_id": "ok",
                     "user": "ann", "type": "regular"}),
        ("message", {"id": "m1", "channel_type": "messaging", "channel_id": "ok",
                     "user": "ann", "type": "shout"}),
        ("message", {"id": "m2", "channel_type": "messaging", "channel_id": "ok",
                     "user": "ann", "type": "regular", "created_at": "yesterday"}),
    ))  # fmt: skip
    assert [(e["line"], e["error"]) for e in errors] == [
        (2, 'Validation error: "id" required'),
        (3, "Validation error: 'bad!id' is not a valid channel.id"),
        (5, "Validation error: 'a,b' is not a valid id"),
        (6, 'Validation error: max "id" length exceeded (255)'),
        (7, "Validation error: 'shout' is not a valid type"),
        (8, "Validation error: 'yesterday' is not a valid created_at"),
    ]


def test_duplicates(client: StreamChat, fast: Emulator) -> None:
    errors = refused(client, fast, jsonl(("user", {"id": "ann"}), ("user", {"id": "ann"})))
    assert errors[0]["error"] == 'Validation error: duplicated user "ann"'


def test_missing_references(client: StreamChat, fast: Emulator) -> None:
    errors = refused(client, fast, jsonl(
        ("user", {"id": "ann"}),
        ("channel", {"id": "c", "type": "messaging", "created_by": "ghost"}),
        ("channel", {"id": "ok", "type": "messaging", "created_by": "ann"}),
        ("member", {"channel_type": "messaging", "channel_id": "ok", "user_id": "ghost"}),
        ("member", {"channel_type": "messaging", "channel_id": "nope", "user_id": "ann"}),
        ("message", {"id": "m", "channel_type": "messaging", "channel_id": "nope",
                     "user": "ann", "type": "regular"}),
        ("reaction", {"message_id": "gone", "type": "like", "user_id": "ann",
                      "created_at": OLD}),
    ))  # fmt: skip
    assert [(e["line"], e["error"]) for e in errors[:2]] == [
        (2, 'Validation error: created_by user ghost doesn\'t exist (channel "messaging:c"). '
            "please include all users as separate user entries"),
        (4, 'Validation error: member user ghost doesn\'t exist (channel "messaging:ok"). '
            "please include all users as separate user entries"),
    ]  # fmt: skip
    assert [e["line"] for e in errors] == [2, 4, 5, 6, 7]
    assert 'channel "messaging:nope" doesn\'t exist' in errors[2]["error"]
    assert 'message "gone" doesn\'t exist' in errors[4]["error"]


def test_items_out_of_order(client: StreamChat, fast: Emulator) -> None:
    errors = refused(client, fast, jsonl(
        ("user", {"id": "ann"}),
        ("channel", {"id": "c", "type": "messaging", "created_by": "ann"}),
        ("user", {"id": "ben"}),
    ))  # fmt: skip
    assert errors[0]["line"] == 3
    assert errors[0]["error"].startswith('Validation error: item of type "user" after an item')


def test_malformed_json_and_unknown_type(client: StreamChat, fast: Emulator) -> None:
    content = (
        jsonl(("user", {"id": "ann"})) + b'\n{"type": "user",, }\n' + jsonl(("foobar", {"id": "x"}))
    )
    errors = refused(client, fast, content)
    assert errors[0]["line"] == 2 and errors[0]["error"].startswith("Parse error: ")
    assert errors[1] == {"line": 3, "error": 'Parse error: invalid item type "foobar"'}


def test_file_too_large(client: StreamChat, fast: Emulator) -> None:
    fast.set_import_options(max_bytes=100)
    errors = refused(client, fast, happy_file())
    assert errors[0]["error"] == "Validation error: max file size exceeded (100 bytes)"


# ---- faults -------------------------------------------------------------------------


def test_endpoint_faults_by_name(client: StreamChat, fast: Emulator) -> None:
    for name in ("CreateImportURL", "CreateImport", "GetImport", "ListImports"):
        fast.inject_failure(name, 503)
    with pytest.raises(StreamAPIException) as err:
        client.create_import_url("a.jsonl")
    assert err.value.status_code == 503
    path = upload(client, happy_file())
    with pytest.raises(StreamAPIException):
        client.create_import(path, "upsert")
    task = client.create_import(path, "upsert")["import_task"]
    with pytest.raises(StreamAPIException):
        client.get_import(task["id"])
    with pytest.raises(StreamAPIException):
        client.list_imports()
    assert client.get_import(task["id"])["import_task"]["state"] == "completed"
    counts = fast.request_counts()["by_status"]
    assert counts["CreateImport 503"] == 1 and counts["CreateImport 201"] == 1


def test_an_import_task_can_be_made_to_fail(client: StreamChat, fast: Emulator) -> None:
    fast.fail_next_import([{"error": "disk full"}])
    task = run_import(client, happy_file())
    assert task["state"] == "failed"
    assert task["result"]["errors"] == [{"error": "disk full"}]
    assert fast.state()["users"] == {}
    assert run_import(client, happy_file())["state"] == "completed"  # only the next one


def test_admin_http_api_for_imports(client: StreamChat, fast: Emulator) -> None:
    base = fast.base_url + "/_emulator"
    answer = requests.post(base + "/imports", json={"state_seconds": 0, "max_bytes": 10**6},
                           timeout=5)  # fmt: skip
    assert answer.json() == {"state_seconds": 0.0, "max_bytes": 10**6,
                             "upload_max_bytes": 300 * 1000 * 1000}  # fmt: skip
    requests.post(base + "/imports/fail", json={}, timeout=5).raise_for_status()
    assert run_import(client, happy_file())["state"] == "failed"
    listed = requests.get(base + "/imports", timeout=5).json()["import_tasks"]
    assert [t["state"] for t in listed] == ["failed"]
    fast.reset()
    assert fast.import_tasks() == []
