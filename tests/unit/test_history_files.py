"""The export's lines and files, without a database: the fast message line is json.dumps's
line, and files cut anywhere resume to the same bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_outbox.worker.store.repository import ChannelRef
from stream_outbox.worker.stream_import.export import _channel_fields, _line, _message_line, rfc3339
from stream_outbox.worker.stream_import.files import (
    ExportFiles,
    ExportState,
    ReferencesChanged,
    read_state,
)
from stream_outbox.worker.sync.bodies import SYSTEM_USER_ID

REF = ChannelRef("messaging", "legacy_c1")


@given(
    text=st.text(),
    sender=st.sampled_from([None, "u1", "gone"]),
    moment=st.datetimes(timezones=st.just(UTC)),
)
def test_the_message_line_is_the_one_json_dumps_writes(
    text: str, sender: str | None, moment: datetime
) -> None:
    # Given a message of any text (quotes, controls, any script), with or without a sender
    line = _message_line(
        "m1", fields=_channel_fields(REF), sender=sender, users={"u1"}, text=text, created=moment
    )
    # Then its line is json.dumps's for the item the live path's body describes
    data = {
        "id": "msg-m1",
        "channel_type": "messaging",
        "channel_id": "legacy_c1",
        "user": sender if sender == "u1" else SYSTEM_USER_ID,
        "text": text,
        "type": "regular",
        "created_at": rfc3339(moment),
    }
    if sender is None:
        data["system"] = True
    elif sender == "gone":
        data["original_user_id"] = "gone"
    assert line == _line("message", data)


def items(n: int) -> list[tuple[str, bytes]]:
    """Reference lines, then message lines, of varied lengths."""
    refs = [("user", _line("user", {"id": f"u{i}", "name": "x" * (i % 7)})) for i in range(n)]
    msgs = [("message", _line("message", {"id": f"m{i}", "t": "y" * (i % 11)})) for i in range(n)]
    return refs + msgs


def write(folder: Path, state: ExportState, lines: list[tuple[str, bytes]], stop: int) -> None:
    """Write ``lines`` into ``folder``, dying (no clean-up) before line ``stop``."""
    files = ExportFiles(folder, state)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    resume_after = int(state.last_message[2]) if state.last_message else -1
    try:
        for n, (kind, line) in enumerate(lines):
            if n == stop:
                return  # the open file is closed as the process's are when it dies
            if kind == "user":
                files.reference(kind, line)
            elif n > resume_after:  # the database's query starts after the last recorded
                files.end_of_references()
                files.message(line, ("c1", start + timedelta(seconds=n), str(n)))
        files.finish()
    finally:
        files.abandon()


@pytest.mark.parametrize("stop", [0, 3, 17, 40, 41, 55, 79])
def test_files_cut_anywhere_resume_to_the_same_bytes(tmp_path: Path, stop: int) -> None:
    lines = items(40)
    (tmp_path / "whole").mkdir()
    write(tmp_path / "whole", ExportState("w", 120), lines, len(lines))
    # When an export dies before a line, and runs again from its state
    folder = tmp_path / "cut"
    folder.mkdir()
    write(folder, ExportState("w", 120), lines, stop)
    state = read_state(folder)
    assert state is not None and not state.complete
    write(folder, state, lines, len(lines))
    # Then the files are the uninterrupted run's, and nothing else is left
    whole = {p.name: p.read_bytes() for p in (tmp_path / "whole").iterdir()}
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == whole
    assert all(len(data) <= 120 for name, data in whole.items() if name.endswith(".jsonl"))


def test_a_resume_whose_references_changed_says_so(tmp_path: Path) -> None:
    lines = items(40)
    write(tmp_path, ExportState("w", 120), lines, 30)
    state = read_state(tmp_path)
    assert state is not None and state.reference_items > 0
    # When a user before the resume point is not the one written
    changed = [("user", _line("user", {"id": "someone else"})), *lines[1:]]
    # Then the resumed run stops to start over
    with pytest.raises(ReferencesChanged):
        write(tmp_path, state, changed, len(changed))
