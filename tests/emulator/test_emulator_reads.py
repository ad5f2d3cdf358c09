"""Server-side MarkRead: a member's read state, as the SDK's ``channel.mark_read`` sets it."""

from __future__ import annotations

from typing import Any

import pytest
from stream_chat.base.exceptions import StreamAPIException

from stream_outbox.emulator import Emulator


def test_mark_read_sets_the_member_s_read_up_to_the_message(emu: Emulator, channel: Any) -> None:
    channel.send_message({"id": "m1", "text": "one"}, "alice")
    channel.send_message({"id": "m2", "text": "two"}, "alice")
    answer = channel.mark_read("bob", message_id="m1")
    assert answer["event"]["type"] == "message.read"
    assert answer["event"]["user"]["id"] == "bob"
    assert answer["event"]["last_read_message_id"] == "m1"
    record = emu.state()["channels"]["messaging:general"]["member_records"]["bob"]
    assert record["last_read_message_id"] == "m1"
    assert record["last_read"] == answer["event"]["created_at"]
    [read] = [r for r in channel.query()["read"] if r["user"]["id"] == "bob"]
    assert read["last_read_message_id"] == "m1"


def test_mark_read_without_a_message_reads_up_to_the_newest(emu: Emulator, channel: Any) -> None:
    channel.send_message({"id": "m1", "text": "one"}, "alice")
    channel.mark_read("bob")
    record = emu.state()["channels"]["messaging:general"]["member_records"]["bob"]
    assert record["last_read_message_id"] == "m1"


def test_a_non_member_s_mark_read_marks_nothing(emu: Emulator, channel: Any) -> None:
    assert channel.mark_read("carol")["event"] is None
    assert "carol" not in emu.state()["channels"]["messaging:general"]["member_records"]


def test_mark_read_up_to_a_message_the_channel_lacks_is_not_found(channel: Any) -> None:
    with pytest.raises(StreamAPIException) as caught:
        channel.mark_read("bob", message_id="nope")
    assert caught.value.status_code == 404
    assert "MarkRead failed with error" in caught.value.error_message


def test_mark_read_counts_as_its_endpoint(emu: Emulator, channel: Any) -> None:
    emu.reset_request_counts()
    channel.mark_read("bob")
    assert emu.request_counts()["counts"] == {"MarkRead": 1}
