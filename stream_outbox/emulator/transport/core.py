"""One API call from routing to response (routing, auth, limits, faults, handlers), apart from
the HTTP wire (``server``)."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from stream_outbox.emulator.config import EmulatorConfig
from stream_outbox.emulator.endpoints import connect
from stream_outbox.emulator.endpoints.call import LIVE_ONLY, Call
from stream_outbox.emulator.endpoints.events import live_event, notifications, watching_event
from stream_outbox.emulator.importing.tasks import ImportBook
from stream_outbox.emulator.rules.errors import (
    AUTHENTICATION_ERROR,
    INPUT_ERROR,
    INTERNAL_ERROR,
    RATE_LIMIT,
    StreamError,
    default_code_for_status,
    error_body,
    not_found,
    user_deactivated,
)
from stream_outbox.emulator.rules.faults import Decision, Failure, Faults
from stream_outbox.emulator.rules.limits import (
    BUDGETED_ENDPOINT,
    ApiBudget,
    RateLimits,
    Verdict,
    canonical_limits,
)
from stream_outbox.emulator.rules.permissions import check_endpoint
from stream_outbox.emulator.state.hub import Connection, Hub
from stream_outbox.emulator.state.request_log import RequestLog
from stream_outbox.emulator.state.store import Store, now_iso, unix_now
from stream_outbox.emulator.transport.auth import Authenticator
from stream_outbox.emulator.transport.routes import Route, match
from stream_outbox.emulator.webhooks.delivery import Delivery
from stream_outbox.emulator.webhooks.sender import SenderOptions, WebhookSender

log = logging.getLogger("stream_outbox.emulator")

ADMIN_PREFIX = "/_emulator"
UNKNOWN_ENDPOINT = "Unknown"
JSON_TYPE = "application/json;charset=utf-8"
# Stream's OpenAPI documents 201 for every POST and PUT operation, 200 for the others.
CREATED_METHODS = frozenset({"POST", "PUT"})


@dataclass
class Request:
    """A parsed HTTP request."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    started: float = field(default_factory=time.perf_counter)
    received: float = field(default_factory=time.time)
    upload: Any = None  # the streamed body of a PUT to an import upload URL
    client_ip: str = ""


@dataclass
class Response:
    """An HTTP response ready to be written."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Plan:
    """Routing result plus the fault decision for one API call."""

    endpoint: str
    route: Route | None
    decision: Decision


def duration_since(started: float) -> str:
    """Stream's ``duration`` field, e.g. ``"0.42ms"``."""
    return f"{(time.perf_counter() - started) * 1000:.2f}ms"


def json_response(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> Response:
    """Encode ``payload`` as a JSON response."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, [("content-type", JSON_TYPE), *(headers or [])])


class EmulatorCore:
    """All emulator state behind one lock, and the logic of every API call."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.store = Store()
        self.faults = Faults(latency_ms=config.latency_ms)
        self.request_log = RequestLog()
        self.limits, self.budget, self.task_seconds = _configured(config)
        self.auth = Authenticator(config.api_key, config.api_secret)
        self.channel_types = frozenset(config.channel_types)
        self.imports = _import_book(config, self.lock)
        self.webhooks = WebhookSender(config.api_key, config.api_secret, _sender_options(config))
        self.hub = Hub()

    def plan(self, request: Request) -> Plan:
        """Route an API request and take its pending fault, if any."""
        route = match(request.method, request.path)
        endpoint = route.endpoint if route else UNKNOWN_ENDPOINT
        with self.lock:
            self.request_log.arrive(endpoint)
            decision = self.faults.decide(endpoint) if route else Decision()
        return Plan(endpoint, route, decision)

    def execute(self, plan: Plan, request: Request) -> Response:
        """Authenticate, rate-limit and run the handler; always returns a response."""
        now = unix_now()
        with self.lock:
            try:
                payload, limits = self._run(plan, request, now)
                status = 201 if request.method in CREATED_METHODS else 200
            except StreamError as err:
                status = err.status
                limits = err.headers or self._peek(plan.endpoint, now)
                payload = error_body(plan.endpoint, err, duration_since(request.started))
            except Exception as exc:  # a bug in the emulator must not kill the connection
                log.exception("emulator handler failed for %s %s", request.method, request.path)
                internal = StreamError(500, INTERNAL_ERROR, f"emulator internal error: {exc}")
                status, limits = 500, self._peek(plan.endpoint, now)
                payload = error_body(plan.endpoint, internal, duration_since(request.started))
            self.request_log.record(plan.endpoint, status, request.received)
        if status < 300:
            payload["duration"] = duration_since(request.started)
        return json_response(status, payload, limits)

    def _run(
        self, plan: Plan, request: Request, now: float
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if plan.route is None:
            raise not_found(f"{request.method} {request.path} is not an emulated endpoint")
        actor = self.auth.check(request.query, request.headers)
        if actor is not None:
            self._check_client(actor, plan.endpoint)
        limits = self._admit(plan.endpoint, now)
        call = Call(
            store=self.store,
            body=_parse_body(request.body),
            query=request.query,
            params=plan.route.params,
            now=now_iso(),
            channel_types=self.channel_types,
            limits=self.limits,
            clock=now,
            task_seconds=self.task_seconds,
            imports=self.imports,
            host=request.headers.get("host", ""),
            actor=actor,
            hub=self.hub,
            connection_id=request.query.get("connection_id") or None,
        )
        try:
            payload = plan.route.handler(call)
        except StreamError as err:
            err.headers = err.headers or limits  # the counted call's X-RateLimit-* values
            raise
        if call.events:
            self._publish(call.events, _request_info(request, actor))
        return payload, limits

    def _check_client(self, user_id: str, endpoint: str) -> None:
        """A user token: an endpoint open to clients, a user that exists and is active."""
        user = self.store.users.get(user_id)
        if user is None or self.store.was_deleted(user_id):
            raise StreamError(
                401, AUTHENTICATION_ERROR, f'JWTAuth error: user "{user_id}" does not exist'
            )
        if user.get("deactivated_at"):
            raise user_deactivated(user_id)
        check_endpoint(user_id, endpoint)

    def _publish(self, events: list[dict[str, Any]], request_info: dict[str, Any]) -> None:
        """Hand the call's events to the webhook sender and to the channels' watchers
        (under the lock: in state order)."""
        deliveries = []
        for event in events:
            cid = event.get("cid")
            for connection, note in notifications(self.store, self.hub, event):
                connection.send(json.dumps(note, separators=(",", ":")))
            if cid and self.hub.has_watchers(cid):
                self.hub.deliver(cid, partial(live_event, self.store, self.hub, event))
            if event.pop(LIVE_ONLY, False):
                continue
            event["request_info"] = request_info
            urls = self.store.hook_urls(event["type"])
            if not urls:
                continue
            body = json.dumps(event, separators=(",", ":")).encode()
            user = event.get("user") or {}
            key = cid or f"user:{user.get('id', '')}"
            for url in urls:
                deliveries.append(Delivery(str(uuid.uuid4()), url, body, event["type"], key))
        self.webhooks.publish(deliveries)

    # ---- WebSocket connections (``GET /connect``) ---------------------------

    def open_connection(
        self, query: dict[str, str], send: Callable[[str], None], close: Callable[[], None]
    ) -> tuple[Connection | None, dict[str, Any]]:
        """Authenticate a ``/connect`` and register the connection; return it with its first
        ``health.check``, or None with the error event Stream sends a refused connection."""
        headers = {
            "stream-auth-type": query.get("stream-auth-type", ""),
            "authorization": query.get("authorization", ""),
        }
        with self.lock:
            try:
                payload = connect.connect_payload(query)
                actor = self.auth.check(query, headers)
                user_id = connect.connecting_user(payload, actor)
                user = connect.upsert_on_connect(
                    self.store, user_id, payload.get("user_details"), now_iso()
                )
            except StreamError as err:
                return None, connect.connection_error(err)
            connection = Connection(str(uuid.uuid4()), user_id, send, close)
            self.hub.add(connection)
            user["online"] = True
            user["last_active"] = now_iso()
            event = self.health_check(connection)
            event["me"] = connect.own_user(self.store, user_id)
        return connection, event

    def health_check(self, connection: Connection) -> dict[str, Any]:
        """A ``health.check`` event for one connection."""
        return {
            "type": "health.check",
            "connection_id": connection.id,
            "cid": "*",
            "created_at": now_iso(),
        }

    def close_connection(self, connection: Connection) -> None:
        """Forget a closed connection: it watches nothing now; its user is offline when it
        has no other connection."""
        with self.lock:
            watched = set(connection.watching)
            if self.hub.remove(connection.id) is None:
                return
            user = self.store.users.get(connection.user_id)
            if user is not None and not self.hub.online(connection.user_id):
                user["online"] = False
                user["last_active"] = now_iso()
            self._stopped_watching(connection.user_id, watched)

    def _stopped_watching(self, user_id: str, cids: set[str]) -> None:
        """``user.watching.stop`` to the other watchers of channels the user no longer
        watches from any connection."""
        for cid in sorted(cids):
            channel = self.store.channels.get(cid)
            if channel is None or user_id in self.hub.watcher_ids(cid):
                continue
            event = watching_event(
                self.store, self.hub, "user.watching.stop", channel, user_id, now_iso()
            )
            self.hub.deliver(cid, partial(_same, event))

    def _admit(self, endpoint: str, now: float) -> list[tuple[str, str]]:
        """Count the call against its rate limits and budget; 429 when either is spent."""
        verdict = self.limits.consume(endpoint, now)
        headers = _limit_headers(verdict)
        if not verdict.allowed:
            raise StreamError(
                429,
                RATE_LIMIT,
                "Too many requests, check response headers for more information.",
                headers=headers,
            )
        budget = self.budget.charge(now) if endpoint == BUDGETED_ENDPOINT else None
        if budget is None:
            return headers
        if not budget.allowed:
            self.limits.refund(endpoint, now)  # a refused call does not count
            raise StreamError(
                429,
                RATE_LIMIT,
                "API budget exceeded, check the X-Budget-* response headers for more information.",
                headers=self._peek(endpoint, now) + budget.headers(),
            )
        return headers + budget.headers()

    def _peek(self, endpoint: str, now: float) -> list[tuple[str, str]]:
        return _limit_headers(self.limits.peek(endpoint, now))

    def injected_failure(self, plan: Plan, failure: Failure, request: Request) -> Response:
        """Answer with an injected error (Stream-shaped body)."""
        code = failure.code if failure.code is not None else default_code_for_status(failure.status)
        detail = failure.message or f"injected failure (HTTP {failure.status})"
        err = StreamError(failure.status, code, detail)
        with self.lock:
            limits = self._peek(plan.endpoint, unix_now())
            self.request_log.record(plan.endpoint, failure.status, request.received)
        body = error_body(plan.endpoint, err, duration_since(request.started))
        return json_response(failure.status, body, limits)

    def note(self, endpoint: str, outcome: str) -> None:
        """Record a call that ended without a response (``dropped`` / ``hung``)."""
        with self.lock:
            self.request_log.record(endpoint, outcome)

    def reset(self) -> None:
        """Empty state, faults and counters; limits, budget and tasks go back to the config."""
        with self.lock:
            self.store = Store()
            self.faults = Faults(latency_ms=self.config.latency_ms)
            self.request_log = RequestLog()
            self.limits, self.budget, self.task_seconds = _configured(self.config)
            self.imports.close()
            self.imports = _import_book(self.config, self.lock)
            self.webhooks.reset(_sender_options(self.config))
            self.hub.close_all()

    def close(self) -> None:
        """Stop import work and webhooks, remove uploaded files (import tasks are forgotten)."""
        with self.lock:
            self.imports.close()
            self.imports = _import_book(self.config, self.lock)
        self.webhooks.close()
        with self.lock:
            self.hub.close_all()


def _same(event: dict[str, Any], _connection: Connection) -> dict[str, Any]:
    return event


def _import_book(config: EmulatorConfig, lock: threading.Lock) -> ImportBook:
    """No uploads or import tasks; state delay and file size limit as configured."""
    return ImportBook(
        config.import_state_seconds,
        config.import_max_bytes,
        lock=lock,
        channel_types=frozenset(config.channel_types),
    )


def _sender_options(config: EmulatorConfig) -> SenderOptions:
    return SenderOptions(config.webhook_timeout_seconds, config.webhook_backoff_seconds)


def _configured(config: EmulatorConfig) -> tuple[RateLimits, ApiBudget, float]:
    """Rate limits, API budget and task duration as configured (fresh usage)."""
    limits = RateLimits(
        window_seconds=config.window_seconds,
        overrides=canonical_limits(config.rate_limits),
        stream_limits=config.stream_limits,
    )
    budget = ApiBudget(config.api_budget_ms, config.api_budget_cost_ms, config.window_seconds)
    return limits, budget, config.task_seconds


def _request_info(request: Request, actor: str | None) -> dict[str, Any]:
    """Stream's ``request_info``: who issued the request that caused an event."""
    info = {
        "type": "client" if actor is not None else "server",
        "ip": request.client_ip,
        "user_agent": request.headers.get("user-agent", ""),
        "sdk": request.headers.get("x-stream-client", ""),
    }
    if "x-stream-ext" in request.headers:
        info["ext"] = request.headers["x-stream-ext"]
    return info


def _limit_headers(verdict: Verdict) -> list[tuple[str, str]]:
    return [
        ("x-ratelimit-limit", str(verdict.limit)),
        ("x-ratelimit-remaining", str(verdict.remaining)),
        ("x-ratelimit-reset", str(verdict.reset)),
    ]


def _parse_body(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise StreamError(400, INPUT_ERROR, "invalid json data", prefixed=False) from exc
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise StreamError(400, INPUT_ERROR, "invalid json data", prefixed=False)
    return body
