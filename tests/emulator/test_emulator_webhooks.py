"""Webhooks as Stream sends them: configured through ``update_app_settings``, signed,
retried, shaped as Stream's webhook events, with faults injectable."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
import requests
from stream_chat import StreamChat
from stream_chat.base.exceptions import StreamAPIException

from stream_outbox.emulator import Emulator
from tests.support.webhook_receiver import WebhookReceiver


def _of_type(receiver: WebhookReceiver, event_type: str) -> list[dict[str, Any]]:
    return [e for e in receiver.events() if e["type"] == event_type]


def _hook(url: str, *event_types: str, enabled: bool = True) -> dict[str, Any]:
    return {
        "enabled": enabled,
        "hook_type": "webhook",
        "webhook_url": url,
        "event_types": list(event_types),
    }


def test_a_server_side_send_is_posted_signed_with_stream_headers(
    emu: Emulator, client: StreamChat, channel: Any, hooked: WebhookReceiver
):
    # Given a hook for every event
    # When a message is sent server-side
    sent = channel.send_message({"text": "hello"}, "alice")["message"]

    # Then one signed message.new reaches the hook, with Stream's headers
    assert emu.wait_webhooks()
    (request,) = [r for r in hooked.received if r.event["type"] == "message.new"]
    assert client.verify_webhook(request.body, request.headers["X-Signature"])
    assert uuid.UUID(request.headers["X-Webhook-Id"])
    assert request.headers["X-Webhook-Attempt"] == "1"
    assert request.headers["X-Api-Key"] == emu.api_key
    event = request.event
    assert (event["cid"], event["channel_type"], event["channel_id"]) == (
        "messaging:general",
        "messaging",
        "general",
    )
    message = event["message"]
    assert (message["id"], message["text"], message["user"]["id"]) == (sent["id"], "hello", "alice")
    assert message["created_at"] == sent["created_at"] and message["updated_at"]
    assert event["user"]["id"] == "alice" and event["created_at"]
    assert {m["user_id"] for m in event["members"]} == {"alice", "bob"}
    assert event["request_info"]["type"] == "server"
    assert event["request_info"]["sdk"].startswith("stream-python-client")


def test_a_forged_body_does_not_verify(
    emu: Emulator, client: StreamChat, channel: Any, hooked: WebhookReceiver
):
    channel.send_message({"text": "hello"}, "alice")
    assert emu.wait_webhooks()
    request = hooked.received[-1]
    assert not client.verify_webhook(request.body + b" ", request.headers["X-Signature"])


def test_only_the_subscribed_event_types_are_posted(
    emu: Emulator, client: StreamChat, channel: Any, receiver: WebhookReceiver
):
    # Given one hook for message.new only, and a disabled one for everything
    client.update_app_settings(
        event_hooks=[_hook(receiver.url, "message.new"), _hook(receiver.url, enabled=False)]
    )
    assert client.get_app_settings()["app"]["event_hooks"][0]["event_types"] == ["message.new"]

    # When a message is sent, edited and read
    sent = channel.send_message({"text": "one"}, "alice")["message"]
    client.update_message_partial(sent["id"], {"set": {"text": "two"}}, "alice")
    channel.mark_read("bob")

    # Then only the message.new was posted
    assert emu.wait_webhooks()
    assert [e["type"] for e in receiver.events()] == ["message.new"]


def test_the_older_webhook_url_setting_is_a_hook_for_every_event(
    emu: Emulator, client: StreamChat, channel: Any, receiver: WebhookReceiver
):
    client.update_app_settings(webhook_url=receiver.url)
    channel.send_message({"text": "one"}, "alice")
    assert emu.wait_webhooks()
    assert [e["type"] for e in receiver.events()] == ["message.new"]
    assert client.get_app_settings()["app"]["webhook_url"] == receiver.url


def test_new_event_hooks_replace_the_old_ones(
    emu: Emulator, client: StreamChat, channel: Any, receiver: WebhookReceiver
):
    client.update_app_settings(event_hooks=[_hook(receiver.url)])
    client.update_app_settings(event_hooks=[])
    channel.send_message({"text": "one"}, "alice")
    assert emu.wait_webhooks()
    assert receiver.received == []


def test_a_bad_hook_is_refused(client: StreamChat):
    with pytest.raises(StreamAPIException) as caught:
        client.update_app_settings(event_hooks=[_hook("not a url")])
    assert (caught.value.status_code, caught.value.error_code) == (400, 4)


def test_server_side_changes_emit_stream_events_in_order(
    emu: Emulator, client: StreamChat, users: list[str], hooked: WebhookReceiver
):
    # Given a channel created with a hook listening
    channel = client.channel("messaging", "team", {"members": ["alice", "bob"]})
    channel.create("alice")

    # When every kind of change is made server-side
    first = channel.send_message({"text": "one"}, "alice")["message"]
    client.update_message_partial(first["id"], {"set": {"text": "uno"}}, "alice")
    client.update_message({"id": first["id"], "text": "eins", "user_id": "alice"})
    client.delete_message(first["id"])
    client.undelete_message(first["id"], "alice")
    second = channel.send_message({"text": "two"}, "bob")["message"]
    client.delete_message(second["id"], hard=True)
    channel.mark_read("bob")
    channel.add_members(["carol"])
    channel.remove_members(["carol"])
    channel.update({"name": "Team"})
    channel.delete()
    client.upsert_user({"id": "dave", "name": "Dave"})

    # Then each posts its event, a channel's in the order the changes were made
    assert emu.wait_webhooks()
    events = hooked.events()
    assert [e["type"] for e in events if "cid" in e] == [
        "channel.created",
        "message.new",
        "message.updated",
        "message.updated",
        "message.deleted",
        "message.undeleted",
        "message.new",
        "message.deleted",
        "message.read",
        "member.added",
        "member.removed",
        "channel.updated",
        "channel.deleted",
    ]
    assert [e["type"] for e in events if "cid" not in e] == ["user.updated"]
    by_type = {e["type"]: e for e in events}  # the last of each type
    texts = [e["message"]["text"] for e in _of_type(hooked, "message.updated")]
    assert texts == ["uno", "eins"]
    soft, hard = _of_type(hooked, "message.deleted")
    assert (soft["hard_delete"], soft["message"]["id"], soft["message"]["type"]) == (
        False,
        first["id"],
        "deleted",
    )
    assert soft["message"]["deleted_at"]
    assert (hard["hard_delete"], hard["message"]["id"]) == (True, second["id"])
    read = by_type["message.read"]
    assert (read["user"]["id"], read["channel"]["cid"]) == ("bob", "messaging:team")
    assert read["last_read_message_id"] == first["id"]  # the newest left
    assert by_type["member.added"]["member"]["user_id"] == "carol"
    assert by_type["member.removed"]["member"]["user_id"] == "carol"
    assert by_type["channel.updated"]["channel"]["name"] == "Team"
    assert by_type["channel.deleted"]["channel"]["deleted_at"]
    assert by_type["user.updated"]["user"]["name"] == "Dave"


def test_a_failed_delivery_is_retried_with_the_same_id(
    emu: Emulator, channel: Any, hooked: WebhookReceiver
):
    # Given a hook that answers 500, then 503, then 200
    hooked.answer_next(500, 503)

    # When a message is sent
    channel.send_message({"text": "one"}, "alice")

    # Then three attempts came, one webhook id, attempts 1, 2, 3
    assert emu.wait_webhooks()
    requests_ = hooked.received
    assert [r.headers["X-Webhook-Attempt"] for r in requests_] == ["1", "2", "3"]
    assert len({r.headers["X-Webhook-Id"] for r in requests_}) == 1
    assert [a["outcome"] for a in emu.webhook_attempts()] == [500, 503, 200]


def test_stream_gives_up_after_three_attempts(emu: Emulator, channel: Any, hooked: WebhookReceiver):
    hooked.answer_next(500, 500, 500, 500)
    channel.send_message({"text": "one"}, "alice")
    assert emu.wait_webhooks()
    assert [a["attempt"] for a in emu.webhook_attempts()] == [1, 2, 3]


def test_a_client_error_is_not_retried(emu: Emulator, channel: Any, hooked: WebhookReceiver):
    hooked.answer_next(400)
    channel.send_message({"text": "one"}, "alice")
    assert emu.wait_webhooks()
    assert [a["outcome"] for a in emu.webhook_attempts()] == [400]


def test_a_timed_out_delivery_is_retried(emu: Emulator, channel: Any, hooked: WebhookReceiver):
    # Given a hook whose first answer comes after the emulator's timeout
    emu.set_webhook_options(timeout=0.2)
    hooked.answer_next(200, pause=1.0)

    channel.send_message({"text": "one"}, "alice")

    assert emu.wait_webhooks()
    attempts = emu.webhook_attempts()
    assert [a["outcome"] for a in attempts] == ["timeout", 200]
    assert attempts[0]["webhook_id"] == attempts[1]["webhook_id"]


def test_an_unreachable_hook_is_tried_twice(
    emu: Emulator, client: StreamChat, channel: Any, receiver: WebhookReceiver
):
    # Given a hook on a port nothing listens on
    with WebhookReceiver() as gone:
        url = gone.url
    emu.set_webhook_options(backoff=0.05)
    client.update_app_settings(event_hooks=[_hook(url, "message.new")])

    channel.send_message({"text": "one"}, "alice")

    assert emu.wait_webhooks()
    assert [(a["attempt"], a["outcome"]) for a in emu.webhook_attempts()] == [
        (1, "error"),
        (2, "error"),
    ]


def test_the_call_does_not_wait_for_the_webhook(
    emu: Emulator, channel: Any, hooked: WebhookReceiver
):
    # Given a hook that holds its answer until released
    hooked.gate.clear()
    channel.send_message({"text": "one"}, "alice")
    hooked.wait_for(1)

    # When another message is sent while the first webhook is unanswered
    channel.send_message({"text": "two"}, "alice")

    # Then the call was answered; the webhook follows once the hook answers
    assert [m["text"] for m in emu.state()["messages"]["messaging:general"]] == ["one", "two"]
    hooked.gate.set()
    assert emu.wait_webhooks()
    assert [e["message"]["text"] for e in _of_type(hooked, "message.new")] == ["one", "two"]


def test_a_channel_s_events_keep_their_order(emu: Emulator, channel: Any, hooked: WebhookReceiver):
    texts = [f"m{n}" for n in range(30)]
    for text in texts:
        channel.send_message({"text": text}, "alice")
    assert emu.wait_webhooks()
    assert [e["message"]["text"] for e in _of_type(hooked, "message.new")] == texts


def test_fault_drop_loses_one_event(emu: Emulator, channel: Any, hooked: WebhookReceiver):
    emu.webhook_fault("drop", event_type="message.new")
    channel.send_message({"text": "lost"}, "alice")
    channel.send_message({"text": "kept"}, "alice")
    assert emu.wait_webhooks()
    assert [e["message"]["text"] for e in _of_type(hooked, "message.new")] == ["kept"]
    assert [a["outcome"] for a in emu.webhook_attempts()] == ["dropped", 200]


def test_fault_duplicate_sends_one_event_twice(
    emu: Emulator, channel: Any, hooked: WebhookReceiver
):
    emu.webhook_fault("duplicate")
    channel.send_message({"text": "twice"}, "alice")
    assert emu.wait_webhooks()
    first, second = hooked.received
    assert first.body == second.body
    assert first.headers["X-Webhook-Id"] == second.headers["X-Webhook-Id"]


def test_fault_reorder_sends_an_event_after_the_next(
    emu: Emulator, channel: Any, hooked: WebhookReceiver
):
    emu.webhook_fault("reorder")
    channel.send_message({"text": "first"}, "alice")
    channel.send_message({"text": "second"}, "alice")
    assert emu.wait_webhooks()
    assert [e["message"]["text"] for e in hooked.events()] == ["second", "first"]


def test_fault_reorder_alone_is_sent_after_its_hold(
    emu: Emulator, channel: Any, hooked: WebhookReceiver
):
    emu.webhook_fault("reorder", seconds=0.1)
    channel.send_message({"text": "alone"}, "alice")
    assert emu.wait_webhooks()
    assert [e["message"]["text"] for e in hooked.events()] == ["alone"]


def test_fault_delay_holds_an_event_back(emu: Emulator, channel: Any, hooked: WebhookReceiver):
    emu.webhook_fault("delay", seconds=0.3)
    sent = channel.send_message({"text": "late"}, "alice")["message"]
    assert emu.wait_webhooks()
    (attempt,) = emu.webhook_attempts()
    assert attempt["outcome"] == 200
    (event,) = hooked.events()
    assert event["message"]["id"] == sent["id"]
    assert attempt["sent"] - emu.request_log("SendMessage")[-1]["answered"] >= 0.3


def test_webhook_faults_are_set_and_listed_over_http(
    emu: Emulator, http: requests.Session, channel: Any, hooked: WebhookReceiver
):
    answer = http.post(
        f"{emu.base_url}/_emulator/faults/webhook", json={"kind": "drop", "times": 2}
    )
    assert answer.status_code == 200
    assert http.get(f"{emu.base_url}/_emulator/faults").json()["webhooks"][0]["times"] == 2
    bad = http.post(f"{emu.base_url}/_emulator/faults/webhook", json={"kind": "explode"})
    assert bad.status_code == 400

    channel.send_message({"text": "one"}, "alice")
    assert emu.wait_webhooks()
    assert http.get(f"{emu.base_url}/_emulator/webhooks/idle").json() == {"idle": True}
    attempts = http.get(f"{emu.base_url}/_emulator/webhooks/attempts").json()["attempts"]
    assert [a["outcome"] for a in attempts] == ["dropped"]
    emu.clear_faults()
    assert http.get(f"{emu.base_url}/_emulator/faults").json()["webhooks"] == []
    options = http.post(f"{emu.base_url}/_emulator/webhooks", json={"timeout": 2, "backoff": 0.1})
    assert (options.json()["timeout"], options.json()["backoff"]) == (2, 0.1)
    assert http.post(f"{emu.base_url}/_emulator/webhooks", json={"timeout": 0}).status_code == 400


def test_reset_forgets_the_hooks(emu: Emulator, client: StreamChat, hooked: WebhookReceiver):
    emu.reset()
    client.upsert_user({"id": "alice"})
    assert emu.wait_webhooks()
    assert hooked.received == []


def test_events_are_posted_while_other_threads_send(
    emu: Emulator, client: StreamChat, users: list[str], hooked: WebhookReceiver
):
    # Given four channels, each written by its own thread (no burst limit in the way)
    emu.set_stream_limits(False)
    channels = []
    for n in range(4):
        ch = client.channel("messaging", f"c{n}", {"members": ["alice"]})
        ch.create("alice")
        channels.append(ch)

    def write(ch: Any) -> None:
        for k in range(10):
            ch.send_message({"text": f"{ch.id}-{k}"}, "alice")

    threads = [threading.Thread(target=write, args=(ch,)) for ch in channels]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then every channel's events arrived, each channel's in order
    assert emu.wait_webhooks()
    for ch in channels:
        sent = [e for e in _of_type(hooked, "message.new") if e["cid"] == ch.cid]
        texts = [e["message"]["text"] for e in sent]
        assert texts == [f"{ch.id}-{k}" for k in range(10)]


def test_user_lifecycle_changes_post_user_events(
    emu: Emulator, client: StreamChat, users: list[str], hooked: WebhookReceiver
):
    client.deactivate_user("carol")
    client.reactivate_user("carol")
    client.update_user_partial({"id": "carol", "set": {"name": "Caroline"}})
    client.delete_user("carol")
    assert emu.wait_webhooks()
    assert [(e["type"], e["user"]["id"]) for e in hooked.events()] == [
        ("user.deactivated", "carol"),
        ("user.reactivated", "carol"),
        ("user.updated", "carol"),
        ("user.deleted", "carol"),
    ]
    assert hooked.events()[2]["user"]["name"] == "Caroline"
