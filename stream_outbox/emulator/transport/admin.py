"""Control operations, shared by the ``/_emulator/...`` HTTP API and the Python API."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from stream_outbox.emulator.importing import uploads
from stream_outbox.emulator.rules.faults import Failure, Interruption, canonical
from stream_outbox.emulator.state.store import unix_now
from stream_outbox.emulator.transport.core import (
    ADMIN_PREFIX,
    EmulatorCore,
    Request,
    Response,
    json_response,
)
from stream_outbox.emulator.webhooks.faults import WebhookFault


class AdminError(ValueError):
    """Bad input to a control operation (HTTP 400 on the admin API)."""


def state(core: EmulatorCore) -> dict[str, Any]:
    """Users, channels and messages as ``GET /_emulator/state`` returns them (import
    tasks whose time has come move on first)."""
    with core.lock:
        core.imports.advance(core.store, unix_now())
        return core.store.snapshot()


def connections(core: EmulatorCore) -> list[dict[str, Any]]:
    """Open WebSocket connections: ``connection_id``, ``user_id`` and the channels each
    watches (a test waits on this for a page to be watching before it writes)."""
    with core.lock:
        return [
            {"connection_id": c.id, "user_id": c.user_id, "watching": sorted(c.watching)}
            for c in core.hub.connections.values()
        ]


def import_tasks(core: EmulatorCore) -> list[dict[str, Any]]:
    """Import tasks newest first, as ``GET /imports`` shows them (not counted)."""
    with core.lock:
        core.imports.advance(core.store, unix_now())
        return [task.view() for task in core.imports.listed()]


def fail_next_import(core: EmulatorCore, errors: list[dict[str, Any]] | None = None) -> None:
    """Make the next import task created end ``failed`` (after analysis) with ``errors``;
    nothing of its file is applied."""
    if errors is not None and not isinstance(errors, list):
        raise AdminError("errors must be a list")
    default = [{"error": "injected import failure"}]
    with core.lock:
        core.imports.failures.append(list(errors) if errors else default)


def set_import_options(
    core: EmulatorCore,
    state_seconds: float | None = None,
    max_bytes: int | None = None,
    upload_max_bytes: int | None = None,
) -> dict[str, Any]:
    """Seconds each import state lasts (0: a task finishes on its first read), the
    largest file analysis accepts and the largest upload taken."""
    if state_seconds is not None and float(state_seconds) < 0:
        raise AdminError("state_seconds must not be negative")
    for name, value in (("max_bytes", max_bytes), ("upload_max_bytes", upload_max_bytes)):
        if value is not None and int(value) < 0:
            raise AdminError(f"{name} must not be negative")
    with core.lock:
        book = core.imports
        if state_seconds is not None:
            book.state_seconds = float(state_seconds)
        if max_bytes is not None:
            book.max_bytes = int(max_bytes)
        if upload_max_bytes is not None:
            book.upload_max_bytes = int(upload_max_bytes)
        return {
            "state_seconds": book.state_seconds,
            "max_bytes": book.max_bytes,
            "upload_max_bytes": book.upload_max_bytes,
        }


def request_counts(core: EmulatorCore) -> dict[str, Any]:
    """``{"counts": {...}, "by_status": {...}, "total": n}``."""
    with core.lock:
        return core.request_log.summary()


def request_log(core: EmulatorCore, endpoint: str | None = None) -> list[dict[str, Any]]:
    """Answered calls with wall-clock ``received``/``answered`` times, oldest first."""
    with core.lock:
        return core.request_log.calls(endpoint)


def reset_requests(core: EmulatorCore) -> None:
    """Forget the request log only."""
    with core.lock:
        core.request_log.clear()


def inject_failure(
    core: EmulatorCore,
    endpoint: str | None,
    status: int,
    times: int = 1,
    code: int | None = None,
    message: str | None = None,
) -> None:
    """Answer the next ``times`` calls of ``endpoint`` (``None``/``"*"``: any) with ``status``."""
    if not 400 <= int(status) <= 599:
        raise AdminError("status must be an HTTP error status (400-599)")
    with core.lock:
        core.faults.add_failure(
            canonical(endpoint), Failure(_positive(times), int(status), code, message)
        )


def drop_connections(
    core: EmulatorCore, endpoint: str | None, times: int = 1, apply: bool = False
) -> None:
    """Close the socket without answering the next ``times`` calls.

    With ``apply=True`` the call is carried out first, as when a response is lost.
    """
    with core.lock:
        core.faults.add_interruption(
            canonical(endpoint), Interruption(_positive(times), 0.0, bool(apply))
        )


def hang(
    core: EmulatorCore, endpoint: str | None, seconds: float, times: int = 1, apply: bool = False
) -> None:
    """Wait ``seconds`` before answering the next ``times`` calls.

    Without ``apply`` the connection is then closed and nothing is changed; with
    ``apply=True`` the call is carried out and answered after the wait.
    """
    if float(seconds) <= 0:
        raise AdminError("seconds must be positive")
    with core.lock:
        core.faults.add_interruption(
            canonical(endpoint), Interruption(_positive(times), float(seconds), bool(apply))
        )


def set_latency(core: EmulatorCore, ms: float, endpoint: str | None = None) -> None:
    """Delay every call (or one endpoint's calls) by ``ms`` milliseconds."""
    if float(ms) < 0:
        raise AdminError("ms must not be negative")
    with core.lock:
        core.faults.set_latency(float(ms), endpoint)


def clear_faults(core: EmulatorCore) -> None:
    """Remove pending failures, drops, hangs, latency and webhook faults."""
    with core.lock:
        core.faults.clear()
    core.webhooks.clear_faults()


def webhook_fault(
    core: EmulatorCore,
    kind: str,
    times: int = 1,
    seconds: float = 0.0,
    event_type: str | None = None,
) -> None:
    """Apply ``kind`` (drop, delay, duplicate, reorder) to the next ``times`` webhook events
    (of ``event_type`` only, when given); ``seconds``: the delay, or how long a reordered
    event waits for a next one."""
    try:
        core.webhooks.add_fault(
            WebhookFault(str(kind), _positive(times), float(seconds), event_type)
        )
    except ValueError as exc:
        raise AdminError(str(exc)) from exc


def set_webhook_options(
    core: EmulatorCore, timeout: float | None = None, backoff: float | None = None
) -> dict[str, Any]:
    """The timeout of one webhook request and the first pause between attempts (seconds)."""
    for name, value in (("timeout", timeout), ("backoff", backoff)):
        if value is not None and float(value) <= 0:
            raise AdminError(f"{name} must be positive")
    core.webhooks.configure(timeout, backoff)
    return core.webhooks.state()


def webhook_attempts(core: EmulatorCore) -> list[dict[str, Any]]:
    """Every webhook attempt (``webhook_id``, ``type``, ``attempt``, ``outcome``: an HTTP
    status, ``timeout``, ``error`` or ``dropped``; wall-clock ``sent`` and ``answered``)."""
    return core.webhooks.attempts()


def wait_webhooks(core: EmulatorCore, timeout: float = 10.0) -> bool:
    """Wait until every webhook event so far is delivered or given up on; False on timeout."""
    return core.webhooks.wait_idle(float(timeout))


def set_rate_limit(core: EmulatorCore, endpoint: str, limit: int | None) -> None:
    """Allow ``limit`` calls of ``endpoint`` per window (``None`` drops the override:
    Stream's default applies with stream limits on, no limit otherwise)."""
    if limit is not None and int(limit) < 0:
        raise AdminError("limit must not be negative")
    with core.lock:
        core.limits.set_limit(endpoint, limit)


def set_window(core: EmulatorCore, seconds: float) -> None:
    """Change the rate-limit (and budget) window length and forget current usage."""
    if float(seconds) <= 0:
        raise AdminError("window_seconds must be positive")
    with core.lock:
        core.limits.set_window(float(seconds))
        core.budget.window_seconds = float(seconds)
        core.budget.spent.clear()


def set_stream_limits(core: EmulatorCore, on: bool) -> None:
    """Switch Stream's default per-endpoint limits and per-second limits on or off."""
    with core.lock:
        core.limits.stream_limits = bool(on)
        core.limits.clear_usage()


def set_api_budget(core: EmulatorCore, limit_ms: float | None, cost_ms: float | None) -> None:
    """QueryChannels' time budget per window (``None``: off) and the cost of one call."""
    if limit_ms is not None and float(limit_ms) < 0:
        raise AdminError("api_budget_ms must not be negative")
    if cost_ms is not None and float(cost_ms) < 0:
        raise AdminError("api_budget_cost_ms must not be negative")
    with core.lock:
        core.budget.configure(limit_ms, cost_ms)


def set_task_seconds(core: EmulatorCore, seconds: float) -> None:
    """How long new async tasks stay pending/running before they report completed."""
    if float(seconds) < 0:
        raise AdminError("task_seconds must not be negative")
    with core.lock:
        core.task_seconds = float(seconds)


def _positive(times: int) -> int:
    if int(times) < 1:
        raise AdminError("times must be at least 1")
    return int(times)


def _rate_limits(core: EmulatorCore, body: dict[str, Any]) -> dict[str, Any]:
    if "window_seconds" in body:
        set_window(core, body["window_seconds"])
    if "stream_limits" in body:
        set_stream_limits(core, body["stream_limits"])
    if "endpoint" in body:
        set_rate_limit(core, body["endpoint"], body.get("limit"))
    if "api_budget_ms" in body:
        set_api_budget(core, body["api_budget_ms"], body.get("api_budget_cost_ms"))
    with core.lock:
        limits, budget = core.limits, core.budget
        return {
            "window_seconds": limits.window_seconds,
            "stream_limits": limits.stream_limits,
            "limits": dict(limits.overrides),
            "in_force": limits.configured(),
            "api_budget_ms": budget.limit_ms,
            "api_budget_cost_ms": budget.cost_ms,
        }


def _faults(core: EmulatorCore) -> dict[str, Any]:
    with core.lock:
        pending = core.faults.pending()
    pending["webhooks"] = core.webhooks.state()["faults"]
    return pending


_Op = Callable[[EmulatorCore, dict[str, Any]], Any]

_OPS: dict[tuple[str, str], _Op] = {
    ("GET", "/state"): lambda core, _: state(core),
    ("POST", "/reset"): lambda core, _: core.reset(),
    ("GET", "/requests"): lambda core, _: request_counts(core),
    ("POST", "/requests/reset"): lambda core, _: reset_requests(core),
    ("POST", "/requests/log"): lambda core, b: {"calls": request_log(core, b.get("endpoint"))},
    ("GET", "/faults"): lambda core, _: _faults(core),
    ("POST", "/faults/clear"): lambda core, _: clear_faults(core),
    ("POST", "/faults/fail"): lambda core, b: inject_failure(
        core, b.get("endpoint"), b["status"], b.get("times", 1), b.get("code"), b.get("message")
    ),
    ("POST", "/faults/latency"): lambda core, b: set_latency(core, b["ms"], b.get("endpoint")),
    ("POST", "/faults/drop"): lambda core, b: drop_connections(
        core, b.get("endpoint"), b.get("times", 1), b.get("apply", False)
    ),
    ("POST", "/faults/hang"): lambda core, b: hang(
        core, b.get("endpoint"), b["seconds"], b.get("times", 1), b.get("apply", False)
    ),
    ("POST", "/faults/webhook"): lambda core, b: webhook_fault(
        core, b["kind"], b.get("times", 1), b.get("seconds", 0.0), b.get("event_type")
    ),
    ("GET", "/webhooks"): lambda core, _: core.webhooks.state(),
    ("POST", "/webhooks"): lambda core, b: set_webhook_options(
        core, b.get("timeout"), b.get("backoff")
    ),
    ("GET", "/webhooks/attempts"): lambda core, _: {"attempts": webhook_attempts(core)},
    # answers at once (the admin API runs on the server's loop): callers poll
    ("GET", "/webhooks/idle"): lambda core, _: {"idle": core.webhooks.state()["pending"] == 0},
    ("GET", "/rate_limits"): lambda core, _: _rate_limits(core, {}),
    ("POST", "/rate_limits"): _rate_limits,
    ("POST", "/tasks"): lambda core, b: set_task_seconds(core, b["task_seconds"]),
    ("GET", "/connections"): lambda core, _: {"connections": connections(core)},
    ("GET", "/health"): lambda core, _: {"ok": True, "api_key": core.config.api_key},
    ("GET", "/imports"): lambda core, _: {"import_tasks": import_tasks(core)},
    ("POST", "/imports/fail"): lambda core, b: fail_next_import(core, b.get("errors")),
    ("POST", "/imports"): lambda core, b: set_import_options(
        core, b.get("state_seconds"), b.get("max_bytes"), b.get("upload_max_bytes")
    ),
}


def handle(core: EmulatorCore, request: Request) -> Response:
    """Serve one ``/_emulator/...`` request (no authentication, not counted)."""
    path = request.path[len(ADMIN_PREFIX) :]
    if path.startswith(uploads.UPLOADS_PREFIX):  # an upload URL (Stream's presigned PUT)
        with core.lock:
            status, kind, body = uploads.upload(core.imports, request.method, path, request.upload)
        return Response(status, body, [("content-type", kind)])
    op = _OPS.get((request.method, path.rstrip("/") or "/"))
    if op is None:
        return json_response(404, {"error": f"no admin operation {request.method} {request.path}"})
    try:
        body = json.loads(request.body) if request.body else {}
        if not isinstance(body, dict):
            raise AdminError("body must be a JSON object")
        result = op(core, body)
    except KeyError as exc:
        return json_response(400, {"error": f"missing field {exc.args[0]}"})
    except (AdminError, ValueError, TypeError) as exc:
        return json_response(400, {"error": str(exc)})
    return json_response(200, result if result is not None else {"ok": True})
