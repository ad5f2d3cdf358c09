"""Stream's webhooks, received as Stream's docs ask (``docs/webhooks/webhooks_overview``).

``create_receiver(...)`` returns a Starlette app serving ``POST /stream/webhook``: the body
bounded (413 past the limit, refused from ``Content-Length`` before it is read), the
``X-Api-Key`` the app's, the ``X-Signature`` the HMAC-SHA256 of the raw body with the API
secret (compared in constant time; 401 and nothing written otherwise), then the event
stored in the inbox once per ``X-Webhook-Id`` (a webhook without one: once per body,
:func:`webhook_id`) and answered 200 at once: the runner applies
it. An event of a type the inbound side does not apply is acknowledged and stored as
``ignored`` (counted in the metrics), so Stream does not retry it.

Serve it with ``stream-outbox inbound`` or mount it in the app's own ASGI app,
``app.mount("/hooks", create_receiver(settings))`` (Stream then posts to
``/hooks/stream/webhook``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from stream_outbox.worker import metrics
from stream_outbox.worker.errors import StreamOutboxError
from stream_outbox.worker.inbound.inbox import Inbox
from stream_outbox.worker.inbound.inbox_event import InboxEvent, event_from
from stream_outbox.worker.settings import Settings

__all__ = [
    "WEBHOOK_PATH",
    "GroupCommit",
    "Receiver",
    "create_receiver",
    "signature_valid",
    "webhook_id",
]

log = logging.getLogger(__name__)
WEBHOOK_PATH = "/stream/webhook"


def signature_valid(secret: bytes, body: bytes, signature: str | None) -> bool:
    """Whether ``signature`` is the hex HMAC-SHA256 of ``body`` with ``secret`` (constant
    time)."""
    if not signature:
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())


def webhook_id(headers: Mapping[str, str], body: bytes) -> str:
    """The key a webhook is stored once under: Stream's ``X-Webhook-Id`` (the same across
    its retries), else ``sha256:`` and the body's SHA-256 (a sender that names none: the
    same body twice is one event, each event's body carrying its own time and ids)."""
    given = headers.get("x-webhook-id", "").strip()
    return given or f"sha256:{hashlib.sha256(body).hexdigest()}"


class GroupCommit:
    """Stores the events of concurrent requests together: each request waits for the
    commit of the batch its event is in (its row is durable before Stream hears 200), and
    the batches grow with the load (one INSERT and one commit for all), up to
    ``max_batch``. Runs on the server's event loop; the INSERT in a thread."""

    def __init__(self, inbox: Inbox, max_batch: int = 500) -> None:
        self.inbox, self.max_batch = inbox, max_batch
        self._waiting: list[tuple[InboxEvent, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def store(self, event: InboxEvent) -> bool:
        """Store ``event`` with those waiting; whether it was new (not a retry)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                try:
                    new = await run_in_threadpool(self.inbox.store_batch, [e for e, _ in batch])
                except Exception as exc:  # the database away: each request answers 503
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), fresh in zip(batch, new, strict=True):
                    if not future.done():  # a request cancelled meanwhile (its client gone)
                        future.set_result(fresh)
        finally:
            self._flusher = None


class _TooLarge(StreamOutboxError):
    """The webhook's body is over the limit."""


def _refused(status: int, outcome: str, reason: str) -> Response:
    metrics.INBOUND_WEBHOOKS.labels(outcome).inc()
    return JSONResponse({"error": reason}, status_code=status)


@dataclass
class Receiver:
    """The webhook view over the inbox's ``store``, the app's key and secret, and a body
    limit.

    ``on_stored`` is called after each new row is committed (the runner's wake-up)."""

    store: Callable[[InboxEvent], Awaitable[bool]]
    api_key: str
    secret: bytes
    max_body: int
    on_stored: Callable[[], None] = lambda: None

    def _declared_too_large(self, request: Request) -> bool:
        declared = request.headers.get("content-length", "")
        return declared.isdigit() and int(declared) > self.max_body

    async def _body(self, request: Request) -> bytes:
        """The body, read no further than the limit."""
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body:
                raise _TooLarge
        return bytes(body)

    async def webhook(self, request: Request) -> Response:
        """POST: check, store once, answer 200 (the runner applies the row). The size a
        request declares and its key are checked before its body is read."""
        too_large = f"the body is over {self.max_body} bytes"
        if self._declared_too_large(request):
            return _refused(413, "too_large", too_large)
        key = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            return _refused(401, "bad_api_key", "X-Api-Key is not this app's key")
        try:
            body = await self._body(request)
        except _TooLarge:
            return _refused(413, "too_large", too_large)
        if not signature_valid(self.secret, body, request.headers.get("x-signature")):
            return _refused(401, "bad_signature", "X-Signature is missing or wrong")
        try:
            event = event_from(json.loads(body), webhook_id(request.headers, body))
        except ValueError as exc:  # json's errors are ValueErrors too
            return _refused(400, "bad_body", f"not a Stream event: {str(exc)[:100]}")
        try:
            stored = await self.store(event)
        except Exception as exc:
            log.error("webhook not stored: %s", type(exc).__name__)
            return _refused(503, "not_stored", "the inbox is unavailable: try again")
        if not stored:
            outcome = "duplicate"
        elif not event.known:
            outcome = "unknown_type"
        else:
            outcome = "stored"
            self.on_stored()
        metrics.INBOUND_WEBHOOKS.labels(outcome).inc()
        return JSONResponse({"ok": True, "outcome": outcome})


def create_receiver(
    settings: Settings,
    engine: Engine | None = None,
    *,
    on_stored: Callable[[], None] | None = None,
    routes: Sequence[BaseRoute] | None = None,
) -> Starlette:
    """The receiver as an ASGI app (``routes``: more of the process's own, such as
    ``/healthz``); a :class:`ConfigurationError` without Stream's key and secret."""
    key, secret = settings.stream_credentials()
    if engine is None:
        engine = create_engine(settings.database_url, pool_pre_ping=True)
    store = GroupCommit(Inbox(engine)).store
    receiver = Receiver(
        store, key, secret.encode(), settings.inbound_max_body, on_stored or (lambda: None)
    )
    webhook = Route(WEBHOOK_PATH, receiver.webhook, methods=["POST"], name="stream_webhook")
    return Starlette(routes=[webhook, *(routes or [])])
