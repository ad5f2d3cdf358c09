"""The built chat page (``examples/frontend/dist``), served at ``/``."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import PlainTextResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

__all__ = ["FRONTEND", "FRONTEND_DIST", "NOT_BUILT", "Page"]

FRONTEND = Path(__file__).resolve().parents[1] / "frontend"
FRONTEND_DIST = FRONTEND / "dist"
NOT_BUILT = "The chat page is not built: run npm ci && npm run build in examples/frontend\n"


class Page(StaticFiles):
    """The files of ``directory`` (``index.html`` for ``/``); a 503 saying how to build them
    while ``index.html`` is missing (looked for on each request: a build later is served)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory, html=True, check_dir=False)
        self.index = directory / "index.html"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.index.is_file():
            await PlainTextResponse(NOT_BUILT, status_code=503)(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
