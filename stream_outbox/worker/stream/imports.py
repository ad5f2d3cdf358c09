"""Stream's import API (its migration path), over the gateway's calls.

``create_import_url`` → PUT the file to the URL → ``create_import`` → ``get_import``
(``docs/migrating/import.md``), and ``list_imports`` to find a task by its path; each
call named, budgeted and counted like the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from stream_chat import StreamChat

from stream_outbox.worker.errors import PermanentStreamError, TransientStreamError
from stream_outbox.worker.stream.gateway import StreamGateway

__all__ = ["ImportAPI"]


class ImportAPI:
    """The import calls of one gateway."""

    def __init__(self, gateway: StreamGateway) -> None:
        self._gateway = gateway

    def create_import_url(self, filename: str) -> tuple[str, str]:
        """Where to upload an import file: ``(upload_url, path)``."""
        answer = self._gateway.call("CreateImportURL", StreamChat.create_import_url, filename)
        return str(answer["upload_url"]), str(answer["path"])

    def upload_file(self, upload_url: str, path: Path) -> None:
        """PUT a file to an upload URL (a presigned URL: no Stream credentials on it)."""
        try:
            with path.open("rb") as body:
                response = requests.put(upload_url, data=body, timeout=600)
        except requests.RequestException as exc:
            raise TransientStreamError(
                f"upload failed: {type(exc).__name__}", endpoint="UploadImport"
            ) from None
        if response.status_code >= 400:
            error = TransientStreamError if response.status_code >= 500 else PermanentStreamError
            raise error(f"upload refused: HTTP {response.status_code}", endpoint="UploadImport")

    def create_import(self, path: str, mode: str) -> dict[str, Any]:
        """Start importing an uploaded file; Stream's ``import_task``."""
        answer = self._gateway.call("CreateImport", StreamChat.create_import, path, mode) or {}
        return dict(answer["import_task"])

    def list_imports(self, limit: int, offset: int = 0) -> list[dict[str, Any]]:
        """Import tasks, newest first (``limit`` from ``offset``)."""
        options = {"limit": limit, "offset": offset}
        answer = self._gateway.call("ListImports", StreamChat.list_imports, options) or {}
        return [dict(task) for task in answer.get("import_tasks") or []]

    def get_import(self, task_id: str) -> dict[str, Any]:
        """An import task as Stream holds it now (``state``, ``result``...)."""
        answer = self._gateway.call("GetImport", StreamChat.get_import, task_id) or {}
        return dict(answer["import_task"])
