"""A stand-in for the app's webhook endpoint: a small HTTP server on a thread that records
every request the emulator sends and answers as told (a status, a pause, or holding the
answer until released)."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request as it came in."""

    headers: dict[str, str]
    body: bytes
    at: float  # wall-clock arrival

    @property
    def event(self) -> dict[str, Any]:
        """The JSON body."""
        value: dict[str, Any] = json.loads(self.body)
        return value


@dataclass
class _Answer:
    status: int = 200
    pause: float = 0.0


class WebhookReceiver:
    """Records POSTs; answers 200 unless ``answer_next`` queued other answers."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._answers: deque[_Answer] = deque()
        self._lock = threading.Condition()
        self.gate = threading.Event()
        self.gate.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received = Received(dict(self.headers.items()), body, time.time())
                answer = receiver._record(received)
                receiver.gate.wait()
                if answer.pause:
                    time.sleep(answer.pause)
                self.send_response(answer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gate.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        """Where to point a hook."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/stream/webhook"

    def answer_next(self, *statuses: int, pause: float = 0.0) -> None:
        """Answer the next requests with these statuses (after ``pause`` seconds each)."""
        with self._lock:
            self._answers.extend(_Answer(status, pause) for status in statuses)

    def events(self) -> list[dict[str, Any]]:
        """The bodies received, in arrival order."""
        with self._lock:
            return [r.event for r in self.received]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until ``count`` requests came in; return them all."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.received)} webhooks received, {count} wanted")
                self._lock.wait(left)
            return list(self.received)

    def _record(self, received: Received) -> _Answer:
        with self._lock:
            self.received.append(received)
            self._lock.notify_all()
            return self._answers.popleft() if self._answers else _Answer()
