"""The upload URL ``create_import_url`` hands out, standing for Stream's presigned S3 URL.

Served by the emulator under ``/_emulator/uploads/<token>/<filename>``, without
authentication: a ``PUT`` of the file's bytes answers 200. The body goes to a file as
it arrives (``UploadSink``), up to ``upload_max_bytes`` (Stream: 300 MB); a bigger one
is read and dropped, and answered as S3 answers an object over its limit (400
``EntityTooLarge``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO
from urllib.parse import unquote

from stream_outbox.emulator.importing.tasks import ImportBook

UPLOADS_PREFIX = "/uploads/"

_TOO_LARGE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>EntityTooLarge</Code>'
    "<Message>Your proposed upload exceeds the maximum allowed size</Message>"
    "<ProposedSize>{size}</ProposedSize><MaxSizeAllowed>{limit}</MaxSizeAllowed></Error>"
)


class UploadSink:
    """The body of a ``PUT`` to an upload URL, written to a file as it arrives (or
    dropped, when ``length`` is over the limit)."""

    def __init__(self, book: ImportBook, length: int) -> None:
        self.length = length
        self.limit = book.upload_max_bytes
        self.file: Path | None = None
        self._handle: IO[bytes] | None = None
        if length <= self.limit:
            fd, name = tempfile.mkstemp(dir=book.directory, suffix=".jsonl")
            self._handle, self.file = os.fdopen(fd, "wb"), Path(name)

    def write(self, data: bytes) -> None:
        """Append a piece of the body."""
        if self._handle is not None:
            self._handle.write(data)

    def close(self) -> None:
        """The body is complete."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def discard(self) -> None:
        """Drop the file (the upload was refused or the connection lost)."""
        self.close()
        if self.file is not None:
            self.file.unlink(missing_ok=True)
            self.file = None


def upload(
    book: ImportBook, method: str, path: str, sink: UploadSink | None
) -> tuple[int, str, bytes]:
    """A request to an upload URL (``path`` after ``/_emulator``): keep the file a
    ``PUT`` brought. Returns status, content type and body."""
    token, _, filename = path[len(UPLOADS_PREFIX) :].partition("/")
    target = book.uploads.get(token)
    if method != "PUT" or sink is None:
        return 405, "application/json", b'{"error":"upload URLs take PUT"}'
    if target is None or unquote(filename) != target.filename:
        sink.discard()
        return 404, "application/json", b'{"error":"no such upload URL"}'
    if sink.file is None:
        text = _TOO_LARGE.format(size=sink.length, limit=sink.limit)
        return 400, "application/xml", text.encode()
    sink.close()
    target.file, target.size = sink.file, sink.length
    return 200, "application/json", b"{}"
