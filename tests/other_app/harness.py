"""Helpers of ``tests/acceptance/test_other_app.py``: waiting, ports, the outbox, Stream's state.

The acceptance test runs the product's processes on this app; these read what they
leave behind (the outbox's statuses, the emulator's state document, the dashboard's
pages) and start and stop servers.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests
from sqlalchemy import Engine, func, select

from stream_outbox.app_hooks import outbox

__all__ = [
    "channel_of",
    "free_port",
    "outbox_row",
    "serving",
    "settled",
    "statuses",
    "stop",
    "target_database",
    "texts",
    "wait_for",
]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def statuses(engine: Engine) -> dict[str, int]:
    query = select(outbox.c.status, func.count()).group_by(outbox.c.status)
    with engine.connect() as conn:
        return {status: n for status, n in conn.execute(query)}


def settled(engine: Engine, failed: int = 0) -> Callable[[], bool]:
    """Nothing pending or dispatched, and exactly ``failed`` failed rows."""

    def check() -> bool:
        found = statuses(engine)
        return set(found) <= {"done", "failed"} and found.get("failed", 0) == failed

    return check


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serving(process: subprocess.Popen[str], url: str) -> None:
    """Wait until ``url`` answers (any status); fail with the output if the process dies."""

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(process.communicate()[0])
        try:
            requests.get(url, timeout=1)
        except requests.ConnectionError:
            return False
        return True

    wait_for(up, 30, url)


def stop(process: subprocess.Popen[str]) -> str:
    os.killpg(process.pid, signal.SIGTERM)
    return process.communicate(timeout=30)[0]


def channel_of(state: dict[str, Any], thread: uuid.UUID) -> dict[str, Any]:
    """The emulator's channel of a thread (its data names the conversation)."""
    found: list[dict[str, Any]] = [
        ch for ch in state["channels"].values() if ch["data"].get("conversation_id") == str(thread)
    ]
    assert len(found) == 1, found
    return found[0]


def outbox_row(engine: Engine, kind: str, target: object) -> int:
    """The id of the newest outbox row of a target."""
    query = (
        select(outbox.c.id)
        .where(outbox.c.target_kind == kind, outbox.c.target_id == str(target))
        .order_by(outbox.c.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        found = conn.scalar(query)
    assert found is not None, (kind, target)
    return int(found)


def target_database(page: str) -> Any:
    """The dashboard row page's "database wants" panel, as data."""
    found = re.search(r'<pre id="target-database">(.*?)</pre>', page, re.S)
    assert found is not None, page
    return json.loads(html.unescape(found.group(1)))


def texts(state: dict[str, Any], channel: dict[str, Any]) -> dict[str, str]:
    messages = state["messages"].get(f"{channel['type']}:{channel['id']}", [])
    return {m["id"]: m["text"] for m in messages if not m.get("deleted_at")}
