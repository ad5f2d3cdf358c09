"""The metrics port's server: ``/metrics`` as prometheus_client serves it, plus
``/healthz`` (liveness) and ``/readyz`` (readiness), 200 or 503 with a JSON body."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from stream_outbox.worker.health.checks import Check, Report

__all__ = ["health_app", "serve"]

StartResponse = Callable[..., Any]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a hung probe never holds the process at exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Log no request line (probes come every few seconds)."""


def _json(start_response: StartResponse, report: Report, good: str, bad: str) -> list[bytes]:
    body = json.dumps(report.as_json(good, bad)).encode()
    status = "200 OK" if report.ok else "503 Service Unavailable"
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [body]


def health_app(liveness: Callable[[], Check], readiness: Callable[[], Report]) -> App:
    """A WSGI app: ``/healthz`` and ``/readyz``; every other path to prometheus_client's
    metrics app, unchanged."""
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path in ("/healthz", "/readyz") and method == "GET":
            if path == "/healthz":
                return _json(start_response, Report((liveness(),)), "alive", "not alive")
            return _json(start_response, readiness(), "ready", "not ready")
        result: Iterable[bytes] = metrics(environ, start_response)
        return result

    return app


def serve(
    port: int,
    liveness: Callable[[], Check],
    readiness: Callable[[], Report],
    host: str = "127.0.0.1",
) -> WSGIServer:
    """Serve metrics and health on ``host:port`` from a daemon thread; returns the server
    (``shutdown()`` stops it)."""
    server = make_server(
        host, port, health_app(liveness, readiness), _Server, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
