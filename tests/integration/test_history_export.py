"""History export: the reference app's chat as Stream import files (real PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import audit
from stream_outbox.app_hooks.outbox import message_map
from stream_outbox.app_hooks.reference import (
    REFERENCE_BINDING,
    Conversation,
    ConversationParticipant,
    Message,
    User,
)
from stream_outbox.emulator import Emulator
from stream_outbox.worker.store.channel_map import ChannelRef
from stream_outbox.worker.store.repository import OutboxRepository
from stream_outbox.worker.stream_import.export import export_history
from stream_outbox.worker.sync.bodies import SYSTEM_USER_ID
from tests.support.settings import API_KEY, API_SECRET
from tests.support.story import invite

START = datetime(2024, 1, 1, tzinfo=UTC)
ORDER = ("user", "channel", "member", "message")


def items(files: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(line) for path in files for line in path.read_text().splitlines()]


def history(session: Session) -> dict[str, Any]:
    """An invitation and a two-person chat with dated messages (one a system message), a
    conversation nobody is in, and a message after the watermark."""
    made = invite(session)
    ann, bob = User(email="ann@example.com"), User(email="bob@example.com")
    dm, empty = Conversation(), Conversation()
    session.add_all([ann, bob, dm, empty])
    session.flush()
    session.add_all(
        ConversationParticipant(conversation_id=dm.id, user_id=u.id) for u in (ann, bob)
    )
    rows = [
        {"conversation_id": dm.id, "sender_id": ann.id, "content": "hi", "created_at": START},
        {"conversation_id": dm.id, "sender_id": None, "content": "joined", "created_at": START},
        {
            "conversation_id": made["conversation"].id,
            "sender_id": made["guest"].id,
            "content": "thanks",
            "created_at": START + timedelta(hours=1),
        },
        {
            "conversation_id": dm.id,
            "sender_id": bob.id,
            "content": "after the watermark",
            "created_at": START + timedelta(days=2),
        },
    ]
    session.execute(insert(Message), rows)
    return {**made, "ann": ann, "bob": bob, "dm": dm, "empty": empty}


def _export_a_day(engine: Engine, out: Path) -> Any:
    """The history exported up to a day after the start."""
    return export_history(
        engine,
        REFERENCE_BINDING,
        OutboxRepository(engine),
        out,
        watermark=START + timedelta(days=1),
    )


def test_the_history_is_written_in_stream_s_order_with_the_live_path_s_ids(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    engine: Engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = history(session)
    # When the history is exported up to a day after the start
    result = _export_a_day(engine, tmp_path)
    found = items(result.files)
    # Then users, channels, members and messages come in that order
    kinds = [item["type"] for item in found]
    assert kinds == sorted(kinds, key=ORDER.index)
    assert result.counts == {"user": 5, "channel": 2, "member": 4, "message": 3}
    # and every reference is to an item before it
    users = {i["data"]["id"] for i in found if i["type"] == "user"}
    assert SYSTEM_USER_ID in users
    cids = {(i["data"]["type"], i["data"]["id"]) for i in found if i["type"] == "channel"}
    for item in found:
        data = item["data"]
        if item["type"] in ("member", "message"):
            assert (data["channel_type"], data["channel_id"]) in cids
            assert data.get("user_id", data.get("user")) in users
    # and the channels have the ids the backfill gives conversations older than go-live
    # (and the map now holds, so the live path uses them too)
    channels = {i["data"]["conversation_id"]: i["data"] for i in found if i["type"] == "channel"}
    dm_id = f"legacy_{made['dm'].id}"
    assert channels[str(made["dm"].id)]["id"] == dm_id
    invitation = channels[str(made["conversation"].id)]
    assert invitation["id"] == f"invitation_{made['invitation'].id}"
    assert invitation["name"] == "Launch"
    assert invitation["created_by"] == str(made["organizer"].id)
    assert str(made["empty"].id) not in channels  # nobody in it: no channel, as live
    assert OutboxRepository(engine).channels.channel_for(str(made["dm"].id)).channel_id == dm_id  # type: ignore[union-attr]
    # and messages keep their time (RFC 3339), get msg- ids, and stop at the watermark
    messages = [i["data"] for i in found if i["type"] == "message"]
    with engine.connect() as conn:
        ids = {text: str(mid) for mid, text in conn.execute(select(Message.id, Message.content))}
    assert {m["text"]: m["id"] for m in messages} == {
        text: f"msg-{ids[text]}" for text in ("hi", "joined", "thanks")
    }
    assert {m["created_at"] for m in messages} == {
        "2024-01-01T00:00:00Z",
        "2024-01-01T01:00:00Z",
    }
    system = next(m for m in messages if m["text"] == "joined")
    assert (system["user"], system["system"]) == (SYSTEM_USER_ID, True)


def test_files_are_split_below_the_size_limit_in_order(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    engine: Engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        history(session)
    one = export_history(
        engine, REFERENCE_BINDING, OutboxRepository(engine), tmp_path / "one", watermark=START
    )
    # When the same history is exported in files of at most 400 bytes
    split = export_history(
        engine,
        REFERENCE_BINDING,
        OutboxRepository(engine),
        tmp_path / "split",
        watermark=START,
        max_bytes=400,
    )
    # Then there are several files, none over the limit, holding the same items in order
    assert len(one.files) == 1 and len(split.files) > 3
    assert all(path.stat().st_size <= 400 for path in split.files)
    assert items(split.files) == items(one.files)


@pytest.mark.slow
def test_the_command_writes_the_files_and_records_the_watermark(
    session_factory: sessionmaker[Session], tmp_path: Path, database_url: str
) -> None:
    engine: Engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        history(session)
    # When an operator runs the command with a watermark
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "stream-outbox"),
            "history",
            "export",
            str(tmp_path / "files"),
            "--until",
            "2024-01-01T12:00:00+00:00",
            "--json",
            "--actor",
            "ops",
        ],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=False,
    )
    # Then it wrote the files, and the audit table holds the watermark
    assert out.returncode == 0, out.stderr
    detail = json.loads(out.stdout)
    assert detail["watermark"] == "2024-01-01T12:00:00Z"
    assert detail["counts"]["message"] == 3
    with engine.connect() as conn:
        row = conn.execute(select(audit).where(audit.c.action == "history_export")).one()
    assert (row.actor, row.row_count, row.detail["watermark"]) == ("ops", 3, detail["watermark"])


# -- the import, through Stream's import API (the emulator's) ------------------------------


def run_history(database_url: str, emu: Emulator, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "GETSTREAM_API_KEY": API_KEY,
        "GETSTREAM_API_SECRET": API_SECRET,
        "STREAM_CHAT_URL": emu.base_url,
    }
    command = [str(Path(sys.executable).parent / "stream-outbox"), "history", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


@pytest.mark.slow
def test_the_files_import_into_stream_with_their_times_once(
    session_factory: sessionmaker[Session], tmp_path: Path, database_url: str, emu: Emulator
) -> None:
    engine: Engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = history(session)
    export_history(
        engine,
        REFERENCE_BINDING,
        OutboxRepository(engine),
        tmp_path,
        watermark=START + timedelta(days=1),
        max_bytes=800,
    )
    # When the files are imported
    first = run_history(database_url, emu, "import", str(tmp_path), "--poll", "0.05")
    # Then each completed, and Stream holds the messages with their ids and original times
    assert first.returncode == 0, first.stdout + first.stderr
    assert all(line.endswith(": completed") for line in first.stdout.splitlines())
    state = emu.state()
    dm = state["messages"][f"messaging:legacy_{made['dm'].id}"]
    assert {(m["text"], m["created_at"][:19]) for m in dm} == {
        ("hi", "2024-01-01T00:00:00"),
        ("joined", "2024-01-01T00:00:00"),
    }
    invitation = state["channels"][f"messaging:invitation_{made['invitation'].id}"]
    assert sorted(invitation["members"]) == sorted(
        [str(made["organizer"].id), str(made["guest"].id)]
    )
    # When it runs again, Then nothing is imported twice
    again = run_history(database_url, emu, "import", str(tmp_path), "--poll", "0.05")
    assert again.returncode == 0, again.stderr
    assert all("skipped: imported before" in line for line in again.stdout.splitlines())


@pytest.mark.slow
def test_a_file_stream_refuses_stops_the_import_in_one_line(
    tmp_path: Path, database_url: str, emu: Emulator
) -> None:
    # Given a file whose channel id is over Stream's 64 characters
    long_id = "c" * 70
    lines = [
        {"type": "user", "data": {"id": "u1"}},
        {"type": "channel", "data": {"id": long_id, "type": "messaging", "created_by": "u1"}},
    ]
    (tmp_path / "history-0001.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    # When it is imported, Then the command says which line and why, and exits 1
    out = run_history(database_url, emu, "import", str(tmp_path), "--poll", "0.05")
    assert out.returncode == 1
    [line] = out.stdout.splitlines()
    assert line.startswith("history-0001.jsonl: analyze_failed (line 2: ")
    assert "max channelID length exceeded (64)" in line


@pytest.mark.slow
def test_members_read_state_goes_with_them(
    session_factory: sessionmaker[Session], tmp_path: Path, database_url: str, emu: Emulator
) -> None:
    # Given a chat in which one member read up to the first message, the other never read
    engine: Engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = history(session)
        part = session.get(ConversationParticipant, (made["dm"].id, made["ann"].id))
        part.last_read_at = START  # type: ignore[union-attr]
    export_history(engine, REFERENCE_BINDING, OutboxRepository(engine), tmp_path, watermark=START)
    # Then the member item carries it (RFC 3339), the other has none (all read, for Stream)
    members = {
        i["data"]["user_id"]: i["data"]
        for i in items(sorted(tmp_path.glob("*.jsonl")))
        if i["type"] == "member" and i["data"]["channel_id"] == f"legacy_{made['dm'].id}"
    }
    assert members[str(made["ann"].id)]["last_read"] == "2024-01-01T00:00:00Z"
    assert "last_read" not in members[str(made["bob"].id)]
    # and the import keeps it
    out = run_history(database_url, emu, "import", str(tmp_path), "--poll", "0.05")
    assert out.returncode == 0, out.stdout + out.stderr
    channel = emu.state()["channels"][f"messaging:legacy_{made['dm'].id}"]
    assert channel["member_records"][str(made["ann"].id)]["last_read"] == "2024-01-01T00:00:00Z"


def test_a_channel_stream_holds_whose_members_all_left_goes_with_its_messages(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    # Given a conversation whose channel Stream holds, everyone gone from it since, with
    # a message of before (the live path keeps such a channel, emptied)
    engine: Engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = history(session)
        left = made["dm"].id
        session.execute(
            insert(Message),
            [{"conversation_id": left, "sender_id": None, "content": "old", "created_at": START}],
        )
        session.query(ConversationParticipant).filter_by(conversation_id=left).delete()
    channels = OutboxRepository(engine).channels
    ref = channels.assign_channel(str(left), [ChannelRef("messaging", f"dm_{left}")])
    channels.mark_in_stream(str(left))
    # When the history is exported
    result = _export_a_day(engine, tmp_path)
    # Then the channel is in the files, made by the system user, with its messages
    written = items(result.files)
    [channel] = [
        i["data"] for i in written if i["type"] == "channel" and i["data"]["id"] == ref.channel_id
    ]
    assert channel["created_by"] == SYSTEM_USER_ID
    texts = {
        i["data"]["text"]
        for i in written
        if i["type"] == "message" and i["data"]["channel_id"] == ref.channel_id
    }
    assert {"hi", "joined", "old"} <= texts
    # and a conversation nobody is in that Stream does not hold is left out, as live
    assert not [
        i for i in written if i["type"] == "channel" and str(made["empty"].id) in str(i["data"])
    ]


def test_a_message_born_in_stream_is_left_out_of_the_files(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    # Given the history, one of whose messages a client sent in Stream (the map says so)
    engine: Engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        history(session)
    with engine.begin() as conn:
        born = conn.scalar(select(Message.id).where(Message.content == "hi"))
        conn.execute(
            insert(message_map).values(message_id=str(born), stream_id="c-1", born_in="stream")
        )
    # When the history is exported
    result = _export_a_day(engine, tmp_path)
    # Then Stream's own message is not in the files (Stream holds it), the others are
    texts = [i["data"]["text"] for i in items(result.files) if i["type"] == "message"]
    assert sorted(texts) == ["joined", "thanks"]
    assert result.counts["message"] == 2
