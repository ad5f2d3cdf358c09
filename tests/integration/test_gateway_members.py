"""The gateway's member changes against the emulator, through the real SDK."""

from __future__ import annotations

from stream_chat import StreamChat

from stream_outbox.emulator import Emulator
from stream_outbox.worker.stream.gateway import StreamGateway
from tests.support.settings import API_KEY, API_SECRET


def test_members_added_and_removed_together_take_one_call_per_hundred(emu: Emulator) -> None:
    # Given a channel of 120 members, and 150 users not in it
    client = StreamChat(API_KEY, API_SECRET, base_url=emu.base_url)
    old, new = [f"old{n}" for n in range(120)], [f"new{n}" for n in range(150)]
    for start in range(0, 270, 100):
        client.upsert_users([{"id": u} for u in (old + new)[start : start + 100]])
    gateway = StreamGateway(API_KEY, API_SECRET, base_url=emu.base_url, timeout=5.0)
    gateway.get_or_create_channel("messaging", "swap", created_by="old0", members=[], data={})
    gateway.update_members("messaging", "swap", old, [])
    emu.reset_request_counts()
    # When all 120 leave and the 150 join
    gateway.update_members("messaging", "swap", new, old)
    # Then two UpdateChannel calls did it (at most 100 of each kind a call)
    assert emu.request_counts()["counts"] == {"UpdateChannel": 2}
    assert sorted(emu.state()["channels"]["messaging:swap"]["members"]) == sorted(new)
