"""The gateway's batch channel deletes against the emulator, through the real SDK."""

from __future__ import annotations

import pytest
from stream_chat import StreamChat

from stream_outbox.emulator import Emulator
from stream_outbox.worker.errors import TransientStreamError
from stream_outbox.worker.stream.gateway import StreamGateway
from tests.support.settings import API_KEY, API_SECRET


def _gateway(emu: Emulator) -> StreamGateway:
    return StreamGateway(API_KEY, API_SECRET, base_url=emu.base_url, timeout=5.0)


def _channels(emu: Emulator, count: int, tag: str) -> list[str]:
    """``count`` channels of one member in Stream: their cids."""
    client = StreamChat(API_KEY, API_SECRET, base_url=emu.base_url)
    client.upsert_users([{"id": "owner"}])
    for n in range(count):
        client.channel("messaging", f"{tag}{n}").create("owner")
    return [f"messaging:{tag}{n}" for n in range(count)]


@pytest.mark.parametrize("hard", [False, True], ids=["soft", "hard"])
def test_150_channels_go_in_two_delete_channels_calls(emu: Emulator, hard: bool) -> None:
    # Given 150 channels in Stream
    cids = _channels(emu, 150, "gone")
    emu.reset_request_counts()
    # When the gateway deletes them
    refused = _gateway(emu).delete_channels(cids, hard=hard)
    # Then two DeleteChannels calls did it, each task followed to its end
    assert refused == {}
    counts = emu.request_counts()["counts"]
    assert counts["DeleteChannels"] == 2
    assert counts["GetTask"] == 2
    assert "DeleteChannel" not in counts
    channels = emu.state()["channels"]
    if hard:
        assert not set(cids) & set(channels)
    else:
        assert all(channels[cid]["deleted_at"] for cid in cids)


def test_channels_stream_does_not_know_count_as_deleted(emu: Emulator) -> None:
    # Given two channels in Stream, one deleted already, and two Stream never held
    held = _channels(emu, 2, "held")
    _gateway(emu).delete_channel("messaging", "held1")
    unknown = ["messaging:never0", "messaging:never1"]
    # When all four are deleted in one batch
    refused = _gateway(emu).delete_channels([*held, *unknown])
    # Then none is refused, and the one Stream held is deleted
    assert refused == {}
    assert emu.state()["channels"]["messaging:held0"]["deleted_at"]


def test_a_transient_failure_of_the_batch_call_raises(emu: Emulator) -> None:
    cids = _channels(emu, 3, "later")
    emu.inject_failure("DeleteChannels", status=503)
    with pytest.raises(TransientStreamError):
        _gateway(emu).delete_channels(cids)
    assert not any(emu.state()["channels"][cid]["deleted_at"] for cid in cids)


def test_a_batch_stream_refuses_whole_goes_again_in_halves(emu: Emulator) -> None:
    # Given a batch call Stream refuses without naming the channels
    cids = _channels(emu, 3, "iso")
    emu.inject_failure("DeleteChannels", status=400, code=4, message="refused")
    emu.reset_request_counts()
    # When the gateway deletes them
    refused = _gateway(emu).delete_channels(cids)
    # Then they went again in halves (one alone, two together), and were deleted
    assert refused == {}
    counts = emu.request_counts()["counts"]
    assert (counts["DeleteChannels"], counts["DeleteChannel"]) == (2, 1)
    assert all(emu.state()["channels"][cid]["deleted_at"] for cid in cids)


def test_a_lone_channel_takes_one_delete_channel_call(emu: Emulator) -> None:
    cids = _channels(emu, 101, "lone")
    emu.reset_request_counts()
    assert _gateway(emu).delete_channels(cids, hard=True) == {}
    counts = emu.request_counts()["counts"]
    assert (counts["DeleteChannels"], counts["GetTask"], counts["DeleteChannel"]) == (1, 1, 1)
    assert not set(cids) & set(emu.state()["channels"])
