"""Stream's Import API endpoints: ``POST /import_urls``, ``POST /imports``, ``GET
/imports/{id}``, ``GET /imports`` (the SDK's ``create_import_url``, ``create_import``,
``get_import`` and ``list_imports``). The upload URL the first one hands out is served
by ``importing/uploads.py``; the tasks move on in ``importing/tasks.py``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from stream_outbox.emulator.endpoints.call import Call
from stream_outbox.emulator.rules.errors import input_error, not_found
from stream_outbox.emulator.rules.validation import clamp_limit, read_offset

MODES = ("upsert", "insert")
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
