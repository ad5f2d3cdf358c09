"""The export's files and its state file: what makes ``history export`` resumable.

A file is written as ``history-NNNN.jsonl.part`` and renamed to ``history-NNNN.jsonl``
once complete. Then ``export-state.json`` (written to a temporary name and renamed, so
it is whole or absent) records it, with where the export stands after it:

* ``reference_items`` and ``reference_sha256``: how many users, channels and members the
  complete files hold, and a digest of those lines;
* ``last_message``: the last message they hold, as ``[conversation, created_at, id]``;
* the watermark and the file limit, and ``complete`` once the last file is renamed.

A file is closed only when the next item does not fit in it, so a run that resumes
after file N starts file N+1 with the very item an uninterrupted run would have put
first in it: the files come out the same. Anything not recorded (a ``.part`` file, a
file renamed just before the process died) is written again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from stream_outbox.worker.errors import AdminError, BadSourceData, StreamOutboxError

__all__ = [
    "FILE_GLOB",
    "STATE_FILE",
    "ExportFiles",
    "ExportState",
    "ReferencesChanged",
    "export_files",
    "read_state",
]

STATE_FILE = "export-state.json"
FILE_GLOB = "history-*.jsonl"
_FORMAT = 1


def _name(number: int) -> str:
    return f"history-{number:04d}.jsonl"


@dataclass
class ExportState:
    """Where an export stands: its complete files and the position after them."""

    watermark: str
    max_bytes: int
    files: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    reference_items: int = 0
    reference_sha256: str = hashlib.sha256().hexdigest()
    last_message: list[str] | None = None
    complete: bool = False

    def as_json(self) -> dict[str, Any]:
        """The state file's content."""
        return {"format": _FORMAT, **self.__dict__}


def read_state(folder: Path) -> ExportState | None:
    """The export state recorded in ``folder``, if any."""
    path = folder / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise AdminError(f"{path} cannot be read ({exc}): remove the folder's export") from None
    if not isinstance(data, dict) or data.pop("format", None) != _FORMAT:
        raise AdminError(f"{path} is not an export state this version knows")
    return ExportState(**data)


def export_files(state: ExportState | None, folder: Path) -> list[Path]:
    """The complete files of a finished export (in order); an unfinished one is refused."""
    if state is None:
        return sorted(folder.glob(FILE_GLOB))
    if not state.complete:
        raise AdminError(f"the export in {folder} is not complete: run history export again")
    return [folder / entry["name"] for entry in state.files]


class ExportFiles:
    """JSON Lines in files of at most ``max_bytes``, written after ``state``'s position.

    Reference items (users, channels, members) come first; while the count of those
    written is below the state's, they are only hashed (the resumed run checks it is
    about to write what the files before hold, see :meth:`reference`).
    """

    def __init__(self, folder: Path, state: ExportState) -> None:
        self.folder, self.state = folder, state
        self._skip = state.reference_items
        self._resumed_in_messages = state.last_message is not None
        self._reference = hashlib.sha256()
        self._seen = 0  # reference items met in this run
        self._out: BinaryIO | None = None
        self._sha = hashlib.sha256()
        self._size = 0
        self._counts: dict[str, int] = {}
        self._pending_message: tuple[Any, datetime, str] | None = None
        self._clear_unrecorded()
        self.save()  # the folder is this export's from now on

    def _clear_unrecorded(self) -> None:
        """Remove what no state entry vouches for: ``.part`` files and later files."""
        recorded = {entry["name"] for entry in self.state.files}
        for path in self.folder.glob(FILE_GLOB + ".part"):
            path.unlink()
        for path in self.folder.glob(FILE_GLOB):
            if path.name not in recorded:
                path.unlink()

    def reference(self, kind: str, line: bytes) -> None:
        """Write (or, before the resume point, hash) a user, channel or member line."""
        if self._seen < self._skip:
            self._seen += 1
            self._reference.update(line)
            if (
                self._seen == self._skip
                and self._reference.hexdigest() != self.state.reference_sha256
            ):
                raise ReferencesChanged()
            return
        self._write(kind, line)  # may close a file first: its position is before this line
        self._seen += 1
        self._reference.update(line)

    def end_of_references(self) -> None:
        """After the last reference item: a run resumed among the messages must have met
        exactly the reference items the files before hold."""
        if self._seen < self._skip or (self._resumed_in_messages and self._seen != self._skip):
            raise ReferencesChanged()

    def message(self, line: bytes, key: tuple[Any, datetime, str]) -> None:
        """Write a message line; ``key`` is its position (conversation, created_at, id)."""
        self._write("message", line, key)

    def _write(self, kind: str, line: bytes, key: tuple[Any, datetime, str] | None = None) -> None:
        size = len(line)
        if size > self.state.max_bytes:
            raise BadSourceData(f"one {kind} item is {size} bytes, over the file limit")
        if self._out is None or self._size + size > self.state.max_bytes:
            self._next_file()
        out = self._out
        assert out is not None
        out.write(line)
        self._sha.update(line)
        self._size += size
        self._counts[kind] = self._counts.get(kind, 0) + 1
        if key is not None:
            self._pending_message = key

    def _next_file(self) -> None:
        self._finish_file()
        number = len(self.state.files) + 1
        self._out = (self.folder / (_name(number) + ".part")).open("wb")
        self._sha, self._size, self._counts = hashlib.sha256(), 0, {}

    def _finish_file(self) -> None:
        """Close the open file, rename it to its final name and record it."""
        out = self._out
        if out is None:
            return
        out.flush()
        os.fsync(out.fileno())
        out.close()
        self._out = None
        name = _name(len(self.state.files) + 1)
        (self.folder / (name + ".part")).replace(self.folder / name)
        state = self.state
        entry = {"name": name, "bytes": self._size, "sha256": self._sha.hexdigest()}
        state.files.append({**entry, "counts": self._counts})
        for kind, n in self._counts.items():
            state.counts[kind] = state.counts.get(kind, 0) + n
        state.reference_items = self._seen
        state.reference_sha256 = self._reference.hexdigest()
        if self._pending_message is not None:
            cid, created, mid = self._pending_message
            state.last_message = [str(cid), created.isoformat(), mid]
        self.save()

    def finish(self) -> None:
        """Close the last file and mark the export complete."""
        self._finish_file()
        self.state.complete = True
        self.save()

    def abandon(self) -> None:
        """Close the open file without recording it (it is written again on resume)."""
        if self._out is not None:
            with contextlib.suppress(OSError):
                self._out.close()
            self._out = None

    def save(self) -> None:
        """Write the state file whole (a temporary name, then a rename)."""
        temporary = self.folder / (STATE_FILE + ".tmp")
        temporary.write_text(json.dumps(self.state.as_json(), indent=1), encoding="utf-8")
        temporary.replace(self.folder / STATE_FILE)


class ReferencesChanged(StreamOutboxError):
    """The users, channels or members differ from what the files before hold."""
