"""The admin dashboard served for a browser: uvicorn in a thread on a free port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from sqlalchemy import Engine

from stream_outbox.worker.dashboard import create_app
from stream_outbox.worker.settings import Settings
from tests.support.processes import free_port

__all__ = ["PASSWORD", "TOKEN", "USER", "serving"]

USER = "admin"
PASSWORD = "browser-pw-Never-Shown-41d2"
TOKEN = "browser-token-Never-Shown-9e07"


@contextmanager
def serving(database_url: str, engine: Engine) -> Iterator[str]:
    """The dashboard over ``engine`` (Basic ``USER``/``PASSWORD``, or ``TOKEN``) under
    uvicorn in a thread; its base URL, until the block ends."""
    settings = Settings(
        database_url=database_url,
        dashboard_user=USER,
        dashboard_password=PASSWORD,
        dashboard_token=TOKEN,
    )
    config = uvicorn.Config(
        create_app(settings, engine=engine),
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
