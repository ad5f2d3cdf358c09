"""A small HTTP/1.1 server on asyncio (keep-alive, Content-Length bodies).

Hand-rolled rather than Starlette on uvicorn: the emulator needs to drop or hang
individual connections, and a plain ``asyncio.Protocol`` serves several times
more requests per second than uvicorn's pure-Python h11 parser (see README).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qsl

from stream_outbox.emulator.importing import uploads
from stream_outbox.emulator.transport import admin
from stream_outbox.emulator.transport.core import (
    ADMIN_PREFIX,
    EmulatorCore,
    Plan,
    Request,
    Response,
    json_response,
)
from stream_outbox.emulator.transport.websocket import WsSession, is_upgrade

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024  # API calls; uploads are streamed to a file
_UPLOADS = ADMIN_PREFIX + uploads.UPLOADS_PREFIX
_REASONS = {s.value: s.phrase for s in HTTPStatus}
# The page using stream-chat-js is served from another origin: every answer allows it, and
# preflights are answered (the client sends ``Authorization``, ``stream-auth-type``,
# ``X-Stream-Client``, ``x-client-request-id`` and a JSON ``Content-Type``).
_CORS = [
    ("access-control-allow-origin", "*"),
    ("access-control-expose-headers", "x-ratelimit-limit, x-ratelimit-remaining"),
]
_ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
_ALLOWED_HEADERS = (
    "authorization, stream-auth-type, x-stream-client, x-client-request-id, content-type"
)


class _BadRequest(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class _Streamed:
    """An upload whose body is still arriving."""

    def __init__(self, request: Request, keep_alive: bool, length: int) -> None:
        self.request, self.keep_alive, self.left = request, keep_alive, length
        self.sink: uploads.UploadSink = request.upload

    @property
    def done(self) -> bool:
        """The whole body is in."""
        return self.left == 0

    def feed(self, data: bytes) -> bytes:
        """Take the body's part of ``data``; return what follows it."""
        part = data[: self.left]
        self.sink.write(part)
        self.left -= len(part)
        if self.left == 0:
            self.sink.close()
        return data[len(part) :]


class Tracker:
    """Open connections and delayed answers, so that stopping can end them all."""

    def __init__(self) -> None:
        self.connections: set[HttpProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task kept until it finishes."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close_all(self) -> None:
        """Cancel delayed answers and abort open connections."""
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for connection in list(self.connections):
            connection.abort()


class HttpProtocol(asyncio.Protocol):
    """One client connection; requests on it are answered in order."""

    def __init__(self, core: EmulatorCore, tracker: Tracker) -> None:
        self.core = core
        self.tracker = tracker
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending: deque[tuple[Request, bool]] = deque()
        self.busy = False
        self.closed = False
        self.upload: _Streamed | None = None
        self.peer = ""
        self.ws: WsSession | None = None  # after a ``/connect`` upgrade

    # ---- asyncio callbacks -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport."""
        self.transport = cast(asyncio.Transport, transport)
        self.tracker.connections.add(self)
        peer = self.transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else ""

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection (a delayed call still runs to its end)."""
        self.closed = True
        self.tracker.connections.discard(self)
        if self.ws is not None:
            self.ws.lost()
        if self.upload is not None:
            self.upload.sink.discard()
            self.upload = None

    def data_received(self, data: bytes) -> None:
        """Parse every complete request in the buffer and answer it."""
        if self.ws is not None:
            self.ws.feed(data)
            return
        if self.upload is not None:
            data = self.upload.feed(data)
            if not self.upload.done:
                return
            streamed, self.upload = self.upload, None
            self._dispatch(streamed.request, streamed.keep_alive)
        self.buffer += data
        while not self.closed:
            try:
                parsed = self._parse()
            except _BadRequest as exc:
                self._write(json_response(exc.status, {"error": str(exc)}), keep_alive=False)
                return
            if parsed is None:
                return
            self._dispatch(*parsed)

    def _dispatch(self, request: Request, keep_alive: bool) -> None:
        if self.busy:
            self.pending.append((request, keep_alive))
            return
        plan = self._process(request, keep_alive)
        if plan is not None:
            self.busy = True
            self.tracker.spawn(self._slow(plan, request, keep_alive))

    # ---- parsing -----------------------------------------------------------

    def _parse(self) -> tuple[Request, bool] | None:
        buf = self.buffer
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise _BadRequest(431, "request header too large")
            return None
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError as exc:
            raise _BadRequest(400, "malformed request line") from exc
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            raise _BadRequest(501, "chunked request bodies are not supported")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError as exc:
            raise _BadRequest(400, "bad Content-Length") from exc
        path, _, query_string = target.partition("?")
        if is_upgrade(method.upper(), path, headers) and self.transport is not None:
            self._upgrade()
            return None
        query = dict(parse_qsl(query_string, keep_blank_values=True))
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        if method.upper() == "PUT" and path.startswith(_UPLOADS):
            return self._stream(Request("PUT", path, query, headers, b""), keep_alive, end, length)
        if length > MAX_BODY_BYTES:
            raise _BadRequest(413, "request body too large")
        total = end + 4 + length
        if len(buf) < total:
            return None
        body = bytes(buf[end + 4 : total])
        del buf[:total]
        request = Request(method.upper(), path, query, headers, body, client_ip=self.peer)
        return request, keep_alive

    def _upgrade(self) -> None:
        """Hand the socket to a WebSocket session (it parses the handshake itself)."""
        assert self.transport is not None
        raw = bytes(self.buffer)
        self.buffer.clear()
        self.ws = WsSession(self.core, self.transport)
        self.ws.feed(raw)

    def _stream(
        self, request: Request, keep_alive: bool, end: int, length: int
    ) -> tuple[Request, bool] | None:
        """Send an upload's body to a file as it arrives; the request is answered
        once the whole body is in."""
        request.upload = uploads.UploadSink(self.core.imports, length)
        streamed = _Streamed(request, keep_alive, length)
        rest = streamed.feed(bytes(self.buffer[end + 4 :]))
        self.buffer.clear()
        if not streamed.done:
            self.upload = streamed
            return None
        self.buffer += rest
        return request, keep_alive

    # ---- handling ----------------------------------------------------------

    def _process(self, request: Request, keep_alive: bool) -> Plan | None:
        """Answer now, or return the plan when the answer must wait (latency, hang)."""
        if request.method == "OPTIONS":
            self._write(_preflight(request), keep_alive)
            return None
        if request.path.startswith(ADMIN_PREFIX):
            self._write(admin.handle(self.core, request), keep_alive)
            return None
        plan = self.core.plan(request)
        decision = plan.decision
        hanging = decision.interruption is not None and decision.interruption.hang_seconds > 0
        if decision.delay > 0 or hanging:
            return plan
        self._finish(plan, request, keep_alive)
        return None

    def _finish(self, plan: Plan, request: Request, keep_alive: bool) -> None:
        decision = plan.decision
        interruption = decision.interruption
        if interruption is not None:
            if interruption.apply:
                self.core.execute(plan, request)
            else:
                self.core.note(plan.endpoint, "dropped")
            self.abort()
        elif decision.failure is not None:
            self._write(self.core.injected_failure(plan, decision.failure, request), keep_alive)
        else:
            self._write(self.core.execute(plan, request), keep_alive)

    async def _slow(self, plan: Plan, request: Request, keep_alive: bool) -> None:
        try:
            await self._answer_later(plan, request, keep_alive)
            while self.pending and not self.closed:
                request, keep_alive = self.pending.popleft()
                next_plan = self._process(request, keep_alive)
                if next_plan is not None:
                    await self._answer_later(next_plan, request, keep_alive)
        finally:
            self.busy = False

    async def _answer_later(self, plan: Plan, request: Request, keep_alive: bool) -> None:
        decision = plan.decision
        if decision.delay > 0:
            await asyncio.sleep(decision.delay)
        interruption = decision.interruption
        if interruption is not None and interruption.hang_seconds > 0:
            if not interruption.apply:
                self.core.note(plan.endpoint, "hung")
            await asyncio.sleep(interruption.hang_seconds)
            if not interruption.apply:
                self.abort()
                return
            self._write(self.core.execute(plan, request), keep_alive)
            return
        if not self.closed:
            self._finish(plan, request, keep_alive)

    # ---- output ------------------------------------------------------------

    def _write(self, response: Response, keep_alive: bool) -> None:
        if self.transport is None or self.closed:
            return
        lines = [
            f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}",
            f"content-length: {len(response.body)}",
            "server: stream-emulator",
            "connection: keep-alive" if keep_alive else "connection: close",
        ]
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        lines.extend(f"{name}: {value}" for name, value in _CORS)
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.transport.write(head + response.body)
        if not keep_alive:
            self.transport.close()
            self.closed = True

    def abort(self) -> None:
        """Close the socket without a response."""
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True


def _preflight(request: Request) -> Response:
    """A CORS preflight's answer: any origin, the API's methods, the headers asked for."""
    asked = request.headers.get("access-control-request-headers", "")
    return Response(
        204,
        b"",
        [
            ("access-control-allow-methods", _ALLOWED_METHODS),
            ("access-control-allow-headers", asked or _ALLOWED_HEADERS),
            ("access-control-max-age", "86400"),
        ],
    )


async def start_server(
    core: EmulatorCore, host: str, port: int, tracker: Tracker
) -> asyncio.Server:
    """Listen on ``host:port`` (``port=0`` picks a free port)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: HttpProtocol(core, tracker), host, port, reuse_address=True, backlog=1024
    )
