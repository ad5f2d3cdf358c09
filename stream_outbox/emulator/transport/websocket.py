"""``GET /connect``: one client's WebSocket, framed by wsproto, on the emulator's port.

The HTTP server hands the socket over at the upgrade request. The connection is accepted,
then authenticated from its query (as Stream does: a refused one gets an ``error`` event,
then a close with code 1000, on which stream-chat-js gives up rather than reconnect; an
expired token's code 40 makes it fetch a new token first). The first event is the
``health.check`` with ``connection_id`` and ``me``; the client's health checks (every
25 s) are answered, and the server sends its own every ``HEALTH_SECONDS``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

if TYPE_CHECKING:
    from stream_outbox.emulator.state.hub import Connection
    from stream_outbox.emulator.transport.core import EmulatorCore

log = logging.getLogger("stream_outbox.emulator")

CONNECT_PATH = "/connect"
HEALTH_SECONDS = 30.0  # Stream's server-side health checks; the client's come every 25 s
CLOSE_NORMAL = 1000  # stream-chat-js: WS_CLOSED_SUCCESS, "connection reject", no reconnect
CLOSE_GOING_AWAY = 1001
_MAX_REASON_BYTES = 120  # a close reason is at most 123 bytes


def is_upgrade(method: str, path: str, headers: dict[str, str]) -> bool:
    """A WebSocket handshake to ``/connect``."""
    return (
        method == "GET"
        and path.rstrip("/") == CONNECT_PATH
        and headers.get("upgrade", "").lower() == "websocket"
    )


class WsSession:
    """The WebSocket side of one TCP connection (after the HTTP upgrade)."""

    def __init__(self, core: EmulatorCore, transport: asyncio.Transport) -> None:
        self.core = core
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        self.ws = WSConnection(ConnectionType.SERVER)
        self.connection: Connection | None = None
        self.parts: list[str] = []
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False

    # ---- input -------------------------------------------------------------

    def feed(self, data: bytes | None) -> None:
        """Bytes from the socket (None: it was closed)."""
        try:
            self.ws.receive_data(data)
            for event in self.ws.events():
                self._handle(event)
        except (LocalProtocolError, RemoteProtocolError) as exc:
            log.info("websocket protocol error: %s", exc)
            self.abort()

    def _handle(self, event: object) -> None:
        if isinstance(event, Request):
            self._open(event.target)
        elif isinstance(event, TextMessage):
            self.parts.append(event.data)
            if event.message_finished:
                text, self.parts = "".join(self.parts), []
                self._received(text)
        elif isinstance(event, Message):
            pass  # binary frames mean nothing to Stream's protocol
        elif isinstance(event, Ping):
            self._write(self.ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            if self.ws.state is ConnectionState.REMOTE_CLOSING:
                self._write(self.ws.send(event.response()))
            self.abort()

    def _open(self, target: str) -> None:
        query = dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
        self._write(self.ws.send(AcceptConnection()))
        connection, first = self.core.open_connection(query, self.send, self.close_going_away)
        if connection is None:
            self._send_now(json.dumps(first, separators=(",", ":")))
            reason = str(first["error"]["message"]).encode()[:_MAX_REASON_BYTES]
            self.close(CLOSE_NORMAL, reason.decode(errors="ignore"))
            return
        self.connection = connection
        self._send_now(json.dumps(first, separators=(",", ":")))
        self._schedule_health()

    def _received(self, text: str) -> None:
        """The client's frames: health checks (``[{"type": "health.check", ...}]``)."""
        try:
            data = json.loads(text)
        except ValueError:
            return
        items = data if isinstance(data, list) else [data]
        if self.connection is None:
            return
        for item in items:
            if isinstance(item, dict) and item.get("type") == "health.check":
                self._send_now(json.dumps(self.core.health_check(self.connection)))

    # ---- output ------------------------------------------------------------

    def send(self, text: str) -> None:
        """Send a text frame; safe from any thread (it is written by the event loop)."""
        self._soon(self._send_now, text)

    def _soon(self, *callback: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(*callback)
        except RuntimeError:  # the loop is closed: the socket went with it
            self.closed = True

    def _send_now(self, text: str) -> None:
        if self.closed or self.ws.state is not ConnectionState.OPEN:
            return
        self._write(self.ws.send(TextMessage(data=text)))

    def _write(self, data: bytes) -> None:
        if not self.closed and data:
            self.transport.write(data)

    def _schedule_health(self) -> None:
        self.timer = self.loop.call_later(HEALTH_SECONDS, self._health)

    def _health(self) -> None:
        if self.connection is None or self.closed:
            return
        self._send_now(json.dumps(self.core.health_check(self.connection)))
        self._schedule_health()

    # ---- closing -----------------------------------------------------------

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame and end the connection."""
        if not self.closed and self.ws.state is ConnectionState.OPEN:
            self._write(self.ws.send(CloseConnection(code=code, reason=reason)))
        self._end(abort=False)

    def close_going_away(self) -> None:
        """Close from any thread (the emulator is reset or stopping)."""
        self._soon(self.close, CLOSE_GOING_AWAY, "")

    def abort(self) -> None:
        """Drop the socket."""
        self._end(abort=True)

    def _end(self, abort: bool) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        if abort:
            self.transport.abort()
        else:
            self.transport.close()
        self.lost()

    def lost(self) -> None:
        """The socket is gone: the connection stops watching."""
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        connection, self.connection = self.connection, None
        if connection is not None:
            self.core.close_connection(connection)
