"""``admin verify`` at scale, under Stream's default rate limits (the emulator's: per minute
and per second), against real PostgreSQL, real Redis (the shared budget) and the emulator.

The app and Stream's copy of it are seeded in bulk (:mod:`tests.support.bulk_app`).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import Result
from sqlalchemy import Engine

from stream_outbox.app_hooks.reference import REFERENCE_BINDING
from stream_outbox.emulator import Emulator
from stream_outbox.worker.store import audit
from stream_outbox.worker.store.cutover import EXPORT_ACTION
from stream_outbox.worker.stream.gateway import StreamGateway
from stream_outbox.worker.verify.paged import verify
from tests.support.bulk_app import seed_database, seed_stream
from tests.support.settings import API_KEY, API_SECRET

Cli = Callable[..., Result]


def limited(emu: Emulator) -> dict[str, int]:
    """The calls the emulator refused with 429, by endpoint."""
    counts = emu.request_counts()["by_status"]
    return {key.split()[0]: n for key, n in counts.items() if key.endswith(" 429")}


def test_verify_of_hundreds_of_channels_under_stream_s_limits_is_in_step(
    cli: Cli, clean_db: Engine, emu: Emulator
) -> None:
    # Given 420 conversations, one of 150 members, and Stream holding them all
    seeded = seed_database(clean_db, 420, big=150)
    seed_stream(emu, clean_db)
    emu.reset_request_counts()

    # When verify runs, Stream's default limits on (QueryMembers: 300 a minute, 10 a second)
    result = cli("admin", "verify")

    # Then it is in step, with no 429
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"in step: {seeded['users']} users, 420 channels" in " ".join(result.stdout.split())
    assert limited(emu) == {}
    # and Stream was asked 30 channels a QueryChannels call, members in the answer:
    # QueryMembers only for the channel of more than 100 members, by user id
    counts = emu.request_counts()["counts"]
    assert counts["QueryChannels"] == 14
    assert counts["QueryMembers"] == 2


def test_verify_waits_out_stream_s_429s(
    cli: Cli, clean_db: Engine, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Stream allowing 3 QueryChannels calls every 2 s, and verify not pacing itself
    # by Stream's limits (it learns them from the 429s)
    seed_database(clean_db, 200)
    seed_stream(emu, clean_db)
    emu.set_stream_limits(False)
    emu.set_window(2)
    emu.set_rate_limit("QueryChannels", 3)
    monkeypatch.setenv("OUTBOX_STREAM_LIMITS", "false")

    # When verify runs
    result = cli("admin", "verify", "--json")

    # Then Stream refused some calls, verify waited as Stream said and went again: in step
    assert result.exit_code == 0, (result.output, result.exception)
    assert json.loads(result.stdout)["count"] == 0
    assert limited(emu)["QueryChannels"] >= 1
    assert emu.request_counts()["by_status"]["QueryChannels 201"] == 7


def test_differences_are_found_across_pages(clean_db: Engine, emu: Emulator) -> None:
    # Given 40 conversations with a history of 50 messages, Stream holding them, then
    # drifting: a user renamed, a member gone, a message missing and one at another time
    seed_database(clean_db, 40, messages=50)
    audit.record(clean_db, actor="t", action=EXPORT_ACTION, count=0, detail=_watermark())
    seed_stream(emu, clean_db, messages=True)
    state = emu.core.store
    renamed = sorted(state.users)[3]
    state.users[renamed]["name"] = "Someone else"
    cids = sorted(state.channels)
    member = sorted(state.channels[cids[25]].members)[0]
    del state.channels[cids[25]].members[member]
    history = next(cid for cid in cids if state.messages.get(cid))
    lost = state.messages[history].pop(10)
    moved = state.messages[history][20]
    moved["created_at"] = "2019-01-01T00:00:00.000Z"

    # When verify reads both sides 7 at a time (pages of users, channels, messages)
    gateway = StreamGateway(API_KEY, API_SECRET, base_url=emu.base_url, patience=60)
    found = verify(clean_db, REFERENCE_BINDING, gateway, history=True, page=7)

    # Then each difference is found once
    assert sorted((d.kind, d.id, d.what) for d in found.differences) == sorted(
        [
            ("user", renamed, "name"),
            ("channel", cids[25], "members"),
            ("channel", history, f"message {lost['id']}"),
            ("channel", history, f"created_at of {moved['id']}"),
        ]
    )
    assert (found.users, found.channels, found.messages, found.dated) == (22, 40, 50, 50)


def test_a_channel_of_more_members_than_an_answer_carries_is_read_whole(
    clean_db: Engine, emu: Emulator
) -> None:
    # Given a channel of 250 members in Stream (an answer carries 100)
    seed_database(clean_db, 2, big=250)
    seed_stream(emu, clean_db)
    [big] = [cid for cid, ch in emu.core.store.channels.items() if len(ch.members) == 250]
    gateway = StreamGateway(API_KEY, API_SECRET, base_url=emu.base_url)
    emu.reset_request_counts()

    # When the gateway reads it, as verify does and as a reconcile does
    held = gateway.channel_states([big])[big]
    kind, name = big.split(":")
    created = gateway.get_or_create_channel(kind, name, created_by="x", members=[], data={})

    # Then every member is there, read past the answer's 100 by user id, 100 a call
    assert len(held.members) == len(created.members) == 250
    assert held.members == frozenset(emu.core.store.channels[big].members)
    assert emu.request_counts()["counts"]["QueryMembers"] == 2 * 3


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_verify_messages_of_a_conversation_of_more_than_65535_messages(
    cli: Cli, clean_db: Engine, emu: Emulator
) -> None:
    # Given a conversation of 70,000 messages, imported into Stream at their times
    seed_database(clean_db, 3, messages=70_000)
    audit.record(clean_db, actor="t", action=EXPORT_ACTION, count=0, detail=_watermark())
    seed_stream(emu, clean_db, messages=True)

    # When verify compares the histories, Stream's default limits on
    result = cli("admin", "verify", "--messages")

    # Then every message is there once, at its original time, in order
    assert result.exit_code == 0, (result.output, result.exception)
    said = " ".join(result.stdout.split())
    assert "3 channels, 70000 messages (70000 at their original created_at)" in said
    assert limited(emu) == {}


def _watermark() -> dict[str, object]:
    """An export's audit detail: its watermark after every seeded message."""
    return {"watermark": "2030-01-01T00:00:00+00:00", "files": []}
