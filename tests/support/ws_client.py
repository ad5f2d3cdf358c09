"""A client's WebSocket to Stream (``GET /connect``) as stream-chat-js opens it
(``_buildUrl`` in ``src/connection.ts``: ``json``, ``api_key``, ``authorization``,
``stream-auth-type`` in the query), over the ``websockets`` sync client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from websockets.sync.client import ClientConnection, connect


def connect_url(
    base_url: str, api_key: str, user_id: str, token: str, details: dict[str, Any] | None = None
) -> str:
    """The ``ws://.../connect?...`` URL of a user's connection."""
    payload = {
        "user_id": user_id,
        "user_details": {"id": user_id, **(details or {})},
        "client_request_id": "test-request",
    }
    query = urlencode(
        {
            "json": json.dumps(payload),
            "api_key": api_key,
            "authorization": token,
            "stream-auth-type": "jwt",
            "X-Stream-Client": "stream-chat-javascript-client-node-9.53.0",
        }
    )
    return base_url.replace("http", "ws", 1) + "/connect?" + query


class Socket:
    """One open connection: its first event, and the events after it."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.first: dict[str, Any] = self.receive()
        self.seen: list[dict[str, Any]] = []

    @property
    def connection_id(self) -> str:
        """The id the first ``health.check`` gave."""
        return str(self.first["connection_id"])

    def receive(self, timeout: float = 3.0) -> dict[str, Any]:
        """The next event, whatever its type."""
        event: dict[str, Any] = json.loads(self.ws.recv(timeout=timeout))
        return event

    def next(self, event_type: str, timeout: float = 3.0) -> dict[str, Any]:
        """The next event of ``event_type`` (others are kept in ``seen``)."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.receive(max(deadline - time.monotonic(), 0.01))
            self.seen.append(event)
            if event.get("type") == event_type:
                return event

    def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """The events that come in the next ``seconds`` (none expected, usually)."""
        events = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                events.append(self.receive(left))
            except TimeoutError:
                break
        return events


@contextmanager
def open_socket(url: str) -> Iterator[Socket]:
    """Connect and read the first event; closed on exit."""
    with connect(url, open_timeout=5) as ws:
        yield Socket(ws)
