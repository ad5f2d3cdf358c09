"""Interrupting a history export or import halfway and re-running converges to the same
result as an uninterrupted run (real PostgreSQL; the real SDK over HTTP to the emulator)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import audit
from stream_outbox.app_hooks.lookup import mapped_channel
from stream_outbox.app_hooks.outbox import channel_map, outbox
from stream_outbox.app_hooks.reference import REFERENCE_BINDING, User
from stream_outbox.emulator import Emulator
from stream_outbox.worker.store.cutover import (
    EXPORT_ACTION,
    IMPORT_ACTION,
    RECONCILE_EVENT,
    read_cutover,
)
from stream_outbox.worker.store.repository import OutboxRepository
from stream_outbox.worker.stream.gateway import StreamGateway
from stream_outbox.worker.stream.imports import ImportAPI
from stream_outbox.worker.stream_import.export import export_history
from stream_outbox.worker.stream_import.upload import import_files
from tests.integration.test_history_export import START, history, run_history
from tests.support.settings import API_KEY, API_SECRET

pytestmark = pytest.mark.slow

WATERMARK = START + timedelta(days=1)
UNTIL = "2024-01-02T00:00:00+00:00"
MAX_BYTES = 5_000
# Runs the export in a process of its own and SIGKILLs it (no clean-up of any kind)
# when it is about to write its n-th line.
KILLED_EXPORT = """
import os, signal, sys
from datetime import datetime
from pathlib import Path
from sqlalchemy import create_engine
from stream_outbox.app_hooks.reference import REFERENCE_BINDING, User
from stream_outbox.worker.stream_import import files
from stream_outbox.worker.stream_import.export import export_history
from stream_outbox.worker.store.cutover import EXPORT_ACTION, read_cutover
from stream_outbox.worker.store.repository import OutboxRepository

url, folder, until, max_bytes, kill_at = sys.argv[1:]
written = 0
write = files.ExportFiles._write

def dying_write(self, *args, **kwargs):
    global written
    written += 1
    if written == int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)
    write(self, *args, **kwargs)

files.ExportFiles._write = dying_write
engine = create_engine(url)
export_history(engine, REFERENCE_BINDING, OutboxRepository(engine), Path(folder),
               watermark=datetime.fromisoformat(until), max_bytes=int(max_bytes))
"""


SEED = """
CREATE TEMP TABLE c ON COMMIT DROP AS
  SELECT n, gen_random_uuid() AS id, gen_random_uuid() AS a, gen_random_uuid() AS b
  FROM generate_series(0, :conversations - 1) n;
INSERT INTO users (id, email)
  SELECT a, 'a' || n || '@example.com' FROM c UNION ALL SELECT b, 'b' || n || '@example.com' FROM c;
INSERT INTO conversations (id, created_at) SELECT id, '2023-06-01' FROM c;
INSERT INTO conversation_participants (conversation_id, user_id, last_read_at)
  SELECT id, a, timestamptz '2023-12-01' FROM c UNION ALL SELECT id, b, NULL FROM c;
INSERT INTO messages (id, conversation_id, sender_id, content, created_at)
  SELECT gen_random_uuid(), c.id, CASE WHEN i % 25 = 0 THEN NULL ELSE c.a END,
         'message ' || i, timestamptz '2023-07-01' + i * interval '1 minute'
  FROM generate_series(0, :messages - 1) i JOIN c ON c.n = i % :conversations
"""


def many_messages(session: Session, conversations: int = 30, messages: int = 1500) -> None:
    """Two-person conversations and their messages (one in 25 a system message)."""
    params = {"conversations": conversations, "messages": messages}
    for statement in SEED.split(";"):
        session.execute(text(statement), params)


@pytest.fixture()
def engine_with_history(session_factory: sessionmaker[Session]) -> Engine:
    with session_factory() as session, session.begin():
        history(session)
        many_messages(session)
    engine: Engine = session_factory.kw["bind"]
    return engine


def export(engine: Engine, folder: Path, max_bytes: int = MAX_BYTES) -> list[Path]:
    result = export_history(
        engine,
        REFERENCE_BINDING,
        OutboxRepository(engine),
        folder,
        watermark=WATERMARK,
        max_bytes=max_bytes,
    )
    return result.files


def contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("history-*"))}


def kill_export(database_url: str, folder: Path, at_line: int) -> None:
    args = [sys.executable, "-c", KILLED_EXPORT, database_url, str(folder), UNTIL]
    out = subprocess.run([*args, str(MAX_BYTES), str(at_line)], capture_output=True, check=False)
    assert out.returncode == -9, out.stderr.decode()[-2000:]


@pytest.mark.parametrize(
    ("at_line", "complete"),
    [(40, 0), (150, 2), (1000, 10)],
    ids=["among the users", "among channels and members", "among the messages"],
)
def test_an_export_killed_halfway_resumes_to_the_files_of_an_uninterrupted_run(
    engine_with_history: Engine,
    tmp_path: Path,
    database_url: str,
    emu: Emulator,
    at_line: int,
    complete: int,
) -> None:
    # Given the files of an uninterrupted export
    whole = export(engine_with_history, tmp_path / "whole")
    assert len(whole) > 5
    # When an export into another folder is killed as it writes a line
    folder = tmp_path / "resumed"
    kill_export(database_url, folder, at_line)
    # Then it left complete files, a part-written one and its state, no more
    state = json.loads((folder / "export-state.json").read_text())
    assert not state["complete"] and state["watermark"] == "2024-01-02T00:00:00Z"
    recorded = [entry["name"] for entry in state["files"]]
    assert len(recorded) >= complete
    assert sorted(p.name for p in folder.glob("history-*.jsonl")) == recorded
    assert len(list(folder.glob("history-*.jsonl.part"))) == 1
    # and the import will not take the folder until the export completes
    refused = run_history(database_url, emu, "import", str(folder))
    assert refused.returncode == 2 and "is not complete: run history export again" in refused.stderr
    # When the same command runs again on the folder (the watermark is the folder's)
    again = run_history(database_url, emu, "export", str(folder), "--max-mb", "1", "--json")
    # Then a file limit other than the export's is refused
    assert again.returncode == 2 and "not 1000000" in again.stderr
    again = run_history(database_url, emu, "export", str(folder), "--json", *_limit())
    assert again.returncode == 0, again.stderr
    # and the files are the uninterrupted run's, byte for byte, and the export complete
    assert contents(folder) == contents(tmp_path / "whole")
    assert json.loads((folder / "export-state.json").read_text())["complete"]
    assert json.loads(again.stdout)["counts"]["message"] > 1500


def test_a_resume_after_the_users_changed_starts_over(
    engine_with_history: Engine,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    database_url: str,
) -> None:
    # Given an export killed among the messages
    folder = tmp_path / "resumed"
    kill_export(database_url, folder, 1000)
    # When a user joins before it runs again
    with session_factory() as session, session.begin():
        session.add(User(email="late@example.com"))
    export(engine_with_history, folder)
    # Then its files are those of an export begun now, the new user among them
    whole = export(engine_with_history, tmp_path / "whole")
    assert contents(folder) == contents(tmp_path / "whole")
    assert b"late@example.com" in b"".join(path.read_bytes() for path in whole)


def test_a_resumed_export_keeps_its_first_snapshot_s_cut_over_and_its_completion_reconciles(
    engine_with_history: Engine, tmp_path: Path, database_url: str, emu: Emulator
) -> None:
    # Given an export killed among the messages: its cut-over was recorded before it read
    folder = tmp_path / "resumed"
    kill_export(database_url, folder, 1000)
    with engine_with_history.connect() as conn:
        first = read_cutover(conn)
    assert first is not None and not first.imported and first.since is not None
    # and rows worked on before its snapshot, after it, and one waiting for the import
    before, after = first.since - timedelta(seconds=1), first.since + timedelta(seconds=1)
    with engine_with_history.begin() as conn:
        for target, status, moment, event in (
            ("u-before", "done", before, "update"),
            ("u-after", "done", after, "update"),
            ("u-waits", "pending", after, "recheck"),
        ):
            conn.execute(
                insert(outbox).values(
                    target_kind="user",
                    target_id=target,
                    event=event,
                    status=status,
                    updated_at=moment,
                    available_at=datetime.now(UTC) + timedelta(days=1),
                )
            )
    # When it is resumed, Then it keeps its entry, and its snapshot's time
    again = run_history(database_url, emu, "export", str(folder), "--json", *_limit())
    assert again.returncode == 0, again.stderr
    with engine_with_history.connect() as conn:
        resumed = read_cutover(conn)
        exports = conn.scalars(select(audit.c.id).where(audit.c.action == EXPORT_ACTION)).all()
    assert first.exporting and resumed is not None and not resumed.exporting
    assert (resumed.export_id, resumed.since) == (first.export_id, first.since)
    assert exports == [first.export_id]
    # When its files are imported, Then the cut-over is complete, the targets worked on
    # since the first snapshot are reconciled again, the others not, and the one waiting
    # comes due now (its own row runs: no second one)
    out = run_history(database_url, emu, "import", str(folder), "--poll", "0.02")
    assert out.returncode == 0, out.stdout + out.stderr
    with engine_with_history.connect() as conn:
        assert read_cutover(conn).imported is True  # type: ignore[union-attr]
        again_rows = conn.execute(
            select(outbox.c.target_id).where(outbox.c.event == RECONCILE_EVENT)
        ).scalars()
        assert {"u-after", "u-waits", "u-before"} & set(again_rows) == {"u-after"}
        waiting = conn.execute(select(outbox.c.available_at).where(outbox.c.target_id == "u-waits"))
        assert waiting.scalar_one() <= datetime.now(UTC)


def test_an_abandoned_export_stops_the_waiting_and_the_lookup_s_pending_import(
    engine_with_history: Engine, tmp_path: Path, database_url: str, emu: Emulator
) -> None:
    # Given an export whose import will never run: its channels are pending import
    out = run_history(database_url, emu, "export", str(tmp_path), "--until", UNTIL)
    assert out.returncode == 0, out.stderr
    with engine_with_history.connect() as conn:
        cutover = read_cutover(conn)
        carried = conn.scalar(
            select(channel_map.c.conversation_id).where(
                channel_map.c.exported_in == cutover.export_id  # type: ignore[union-attr]
            )
        )
        assert cutover is not None and cutover.pending
        assert mapped_channel(conn, str(carried)).pending_import  # type: ignore[union-attr]
    # When it is abandoned, Then no cut-over is pending, nor is the channel's import
    given_up = run_history(database_url, emu, "abandon")
    assert given_up.returncode == 0, given_up.stderr
    assert given_up.stdout.startswith("abandoned the export up to 2024-01-02T00:00:00")
    with engine_with_history.connect() as conn:
        assert read_cutover(conn) is None
        assert not mapped_channel(conn, str(carried)).pending_import  # type: ignore[union-attr]
    # and a second abandon says, in one line, that there is nothing to give up
    again = run_history(database_url, emu, "abandon")
    assert again.returncode == 2
    assert again.stderr.strip() == "error: no export waits for its import: nothing to abandon"


def test_a_complete_export_that_stopped_before_recording_its_files_records_them_when_run_again(
    engine_with_history: Engine, tmp_path: Path, database_url: str, emu: Emulator
) -> None:
    # Given an export whose files are complete, but whose entry never got them (it
    # stopped between the two)
    assert run_history(database_url, emu, "export", str(tmp_path), "--until", UNTIL).returncode == 0
    with engine_with_history.begin() as conn:
        entry = conn.execute(
            select(audit.c.id, audit.c.detail).where(audit.c.action == EXPORT_ACTION)
        ).one()
        stopped = {**entry.detail, "state": "exporting", "files": []}
        conn.execute(update(audit).where(audit.c.id == entry.id).values(detail=stopped))
        assert read_cutover(conn).exporting  # type: ignore[union-attr]
    # When the export runs again, Then it writes nothing but records its files
    again = run_history(database_url, emu, "export", str(tmp_path), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["already_complete"] is True
    with engine_with_history.connect() as conn:
        cutover = read_cutover(conn)
        detail = conn.scalar(select(audit.c.detail).where(audit.c.id == entry.id))
    assert cutover is not None and not cutover.exporting and detail["files"]
    # and its import then completes the cut-over
    out = run_history(database_url, emu, "import", str(tmp_path), "--poll", "0.02")
    assert out.returncode == 0, out.stdout + out.stderr
    with engine_with_history.connect() as conn:
        assert read_cutover(conn).imported  # type: ignore[union-attr]


def _limit() -> list[str]:
    """The command's options for MAX_BYTES, which the CLI takes in MB: a hidden override."""
    return ["--max-bytes", str(MAX_BYTES)]


def test_a_folder_holding_another_export_is_refused_in_one_line(
    engine_with_history: Engine, tmp_path: Path, database_url: str, emu: Emulator
) -> None:
    # Given a complete export up to a day after the start
    done = run_history(database_url, emu, "export", str(tmp_path), "--until", UNTIL, "--json")
    assert done.returncode == 0, done.stderr
    before = contents(tmp_path)
    # When the export runs into its folder with another watermark
    out = run_history(database_url, emu, "export", str(tmp_path), "--until", "2024-01-03")
    # Then it is refused in one line naming both watermarks, and the files are untouched
    assert out.returncode == 2
    [line] = out.stderr.splitlines()
    assert "holds an export up to 2024-01-02T00:00:00Z, not 2024-01-03T00:00:00Z" in line
    assert contents(tmp_path) == before
    # When it runs with the same watermark, Then it writes nothing and records no new export
    again = run_history(database_url, emu, "export", str(tmp_path), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["already_complete"] is True
    assert contents(tmp_path) == before
    with engine_with_history.connect() as conn:
        exports = conn.scalars(select(audit.c.id).where(audit.c.action == EXPORT_ACTION))
        assert len(exports.all()) == 1
    # and a file changed since it was written is refused
    first = tmp_path / "history-0001.jsonl"
    first.write_bytes(first.read_bytes()[:-10])
    out = run_history(database_url, emu, "export", str(tmp_path))
    assert out.returncode == 2
    assert "history-0001.jsonl is not the file the export wrote" in out.stderr
    # and history files without an export's state are refused too
    (tmp_path / "export-state.json").unlink()
    out = run_history(database_url, emu, "export", str(tmp_path), "--until", UNTIL)
    assert out.returncode == 2
    assert "holds history files of another export" in out.stderr


def test_files_imported_before_count_for_a_later_export_of_the_same_bytes(
    engine_with_history: Engine, tmp_path: Path, database_url: str, emu: Emulator
) -> None:
    # Given an export imported, and another export of the same history into a new folder
    for folder in ("first", "second"):
        out = run_history(database_url, emu, "export", str(tmp_path / folder), "--until", UNTIL)
        assert out.returncode == 0, out.stderr
        if folder == "first":
            out = run_history(database_url, emu, "import", str(tmp_path / folder), "--poll", "0.02")
            assert out.returncode == 0, out.stdout + out.stderr
    with engine_with_history.connect() as conn:
        assert read_cutover(conn).imported is False  # type: ignore[union-attr]
    # When the second is imported, Then nothing is imported twice, and the cut-over
    # counts the latest export's files as imported
    out = run_history(database_url, emu, "import", str(tmp_path / "second"), "--poll", "0.02")
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(line.endswith("skipped: imported before") for line in out.stdout.splitlines())
    assert out.stderr.startswith("cut-over complete: ")
    with engine_with_history.connect() as conn:
        assert read_cutover(conn).imported is True  # type: ignore[union-attr]


# -- the import ------------------------------------------------------------------------------


class Interrupted(BaseException):
    """Stands for the process dying (SIGKILL, Ctrl-C) at a chosen call."""


class DyingAPI(ImportAPI):
    """The real import API that dies right after Stream answered a chosen call."""

    def __init__(self, gateway: StreamGateway, call: str, file: str) -> None:
        super().__init__(gateway)
        self.call, self.file, self.current = call, file, ""

    def create_import_url(self, filename: str) -> tuple[str, str]:
        self.current = filename
        return super().create_import_url(filename)

    def create_import(self, path: str, mode: str) -> dict[str, Any]:
        task = super().create_import(path, mode)
        if self.call == "create_import" and self.current == self.file:
            raise Interrupted()  # Stream created the task; its answer is lost
        return task

    def get_import(self, task_id: str) -> dict[str, Any]:
        task = super().get_import(task_id)
        if self.call == "get_import" and self.current == self.file:
            raise Interrupted()  # the task runs on at Stream's
        return task


def stream_content(emu: Emulator) -> dict[str, Any]:
    """What the history became in Stream: users, channels with their members' records,
    messages (less the times of the import itself)."""
    state = emu.state()

    def kept(record: dict[str, Any], *moments: str) -> dict[str, Any]:
        return {key: value for key, value in record.items() if key not in moments}

    messages = {
        cid: [kept(m, "updated_at") for m in found] for cid, found in state["messages"].items()
    }
    channels = {
        cid: {
            "members": c["members"],
            "records": {
                u: kept(r, "created_at", "updated_at") for u, r in c["member_records"].items()
            },
            "data": c["data"],
        }
        for cid, c in state["channels"].items()
    }
    return {"messages": messages, "channels": channels, "users": sorted(state["users"])}


def test_an_import_interrupted_at_any_step_imports_each_file_once(
    engine_with_history: Engine, tmp_path: Path, database_url: str, emu: Emulator
) -> None:
    files = export(engine_with_history, tmp_path, max_bytes=60_000)
    assert len(files) >= 4
    gateway = StreamGateway(API_KEY, API_SECRET, base_url=emu.base_url)

    def run(api: ImportAPI) -> None:
        import_files(api, engine_with_history, files, actor="ops", poll=0.02)

    # Given an uninterrupted import's result in Stream
    run(ImportAPI(gateway))
    expected = stream_content(emu)
    assert sum(len(m) for m in expected["messages"].values()) > 1500
    emu.reset()
    with engine_with_history.begin() as conn:
        conn.execute(delete(audit).where(audit.c.action == IMPORT_ACTION))
    # When an import dies after Stream created the second file's task, before its answer
    with pytest.raises(Interrupted):
        run(DyingAPI(gateway, "create_import", files[1].name))
    # and the next run dies while the third file's task runs
    with pytest.raises(Interrupted):
        run(DyingAPI(gateway, "get_import", files[2].name))
    # and the command runs a third time
    out = run_history(database_url, emu, "import", str(tmp_path), "--poll", "0.02")
    # Then every file completed, each imported exactly once
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == [f"{f.name}: skipped: imported before" for f in files[:2]]
    assert all(line.endswith(": completed") for line in lines[2:])
    tasks = ImportAPI(gateway).list_imports(100)
    assert sorted(t["path"].rsplit("/", 1)[-1] for t in tasks) == [f.name for f in files]
    # and Stream holds what the uninterrupted import left
    assert stream_content(emu) == expected
