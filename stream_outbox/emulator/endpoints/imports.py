"""Stream's Import API: ``POST /import_urls``, ``POST /imports``, ``GET /imports/{id}``,
``GET /imports`` (the SDK's ``create_import_url``, ``create_import``, ``get_import`` and
``list_imports``), and the upload URL the first one hands out.

The upload URL stands for Stream's presigned S3 URL: served by the emulator under
``/_emulator/uploads/<token>/<filename>``, without authentication, a ``PUT`` of the
file's bytes answers 200. The body goes to a file as it arrives (``UploadSink``), up
to ``upload_max_bytes`` (Stream: 300 MB); a bigger one is read and dropped, and
answered as S3 answers an object over its limit (400 ``EntityTooLarge``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote

from stream_outbox.emulator.endpoints.call import Call
from stream_outbox.emulator.importing.tasks import ImportBook
from stream_outbox.emulator.rules.errors import input_error, not_found
from stream_outbox.emulator.rules.validation import clamp_limit, read_offset

MODES = ("upsert", "insert")
UPLOADS_PREFIX = "/uploads/"
LIST_DEFAULT_LIMIT = 25  # inferred: the docs give no default or maximum for the list
LIST_MAX_LIMIT = 100


def create_import_url(call: Call) -> dict[str, Any]:
    """``POST /import_urls`` (CreateImportURL): ``{"upload_url", "path"}``."""
    filename = call.body.get("filename")
    if not isinstance(filename, str) or not filename.strip() or "/" in filename:
        raise input_error("filename is a required field")
    upload = call.imports.new_upload(filename)
    host = call.host or "127.0.0.1"
    url = f"http://{host}/_emulator/uploads/{upload.token}/{quote(filename)}"
    return {"upload_url": url, "path": upload.path}


def create_import(call: Call) -> dict[str, Any]:
    """``POST /imports`` (CreateImport): a task in state ``uploaded``."""
    path = call.body.get("path")
    mode = call.body.get("mode") or "upsert"
    if not isinstance(path, str) or not path:
        raise input_error("path is a required field")
    if mode not in MODES:
        raise input_error(f"mode must be one of {', '.join(MODES)}")
    upload = call.imports.by_path(path)
    if upload is None:
        raise input_error(f"path {path} was not created with CreateImportURL")
    if upload.file is None:
        raise input_error(f"no file was uploaded to {path}")
    task = call.imports.create(upload, mode, call.clock)
    return {"import_task": task.view()}


def get_import(call: Call) -> dict[str, Any]:
    """``GET /imports/{id}`` (GetImport)."""
    call.imports.advance(call.store, call.clock)
    task = call.imports.tasks.get(call.params[0])
    if task is None:
        raise not_found(f"import task {call.params[0]} not found")
    return {"import_task": task.view()}


def list_imports(call: Call) -> dict[str, Any]:
    """``GET /imports`` (ListImports): newest first, ``limit`` and ``offset``."""
    call.imports.advance(call.store, call.clock)
    limit = clamp_limit(call.query.get("limit"), LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT)
    offset = read_offset(call.query.get("offset"))
    tasks = call.imports.listed()[offset : offset + limit]
    return {"import_tasks": [t.view() for t in tasks]}


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
