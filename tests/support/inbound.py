"""Stream's webhooks as tests and benchmarks send them: events shaped as in Stream's
``webhook_events`` docs, signed with the API secret, and a receiver served over HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import requests
import uvicorn
from starlette.types import ASGIApp

from tests.support.processes import free_port, wait_for
from tests.support.settings import API_KEY, API_SECRET

__all__ = ["message_event", "post_event", "serve_app", "sign"]


def sign(body: bytes, secret: str = API_SECRET) -> str:
    """Stream's ``X-Signature``: the hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def message_event(
    cid: str = "messaging:c1",
    message_id: str | None = None,
    *,
    event_type: str = "message.new",
    text: str = "hello",
    user_id: str = "u1",
    at: datetime | None = None,
) -> dict[str, Any]:
    """A ``message.*`` event as Stream's webhook sends it."""
    channel_type, _, channel_id = cid.partition(":")
    when = (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    message_id = message_id or str(uuid.uuid4())
    user = {"id": user_id, "role": "user"}
    return {
        "type": event_type,
        "cid": cid,
        "channel_type": channel_type,
        "channel_id": channel_id,
        "message": {
            "id": message_id,
            "text": text,
            "type": "regular",
            "user": user,
            "created_at": when,
            "updated_at": when,
        },
        "user": user,
        "created_at": when,
        "request_info": {"type": "client", "ip": "127.0.0.1", "user_agent": "test"},
    }


def post_event(
    session: requests.Session | Any,
    url: str,
    event: dict[str, Any] | bytes,
    *,
    webhook_id: str | None = None,
    key: str = API_KEY,
    secret: str | None = API_SECRET,
    signature: str | None = None,
) -> requests.Response:
    """POST one event as Stream does (signed unless ``secret`` is None or ``signature``
    is given)."""
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Webhook-Attempt": "1",
        "X-Api-Key": key,
    }
    if signature is not None:
        headers["X-Signature"] = signature
    elif secret is not None:
        headers["X-Signature"] = sign(body, secret)
    response: requests.Response = session.post(url, data=body, headers=headers, timeout=10)
    return response


@contextmanager
def serve_app(app: ASGIApp) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free port from a thread; its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the receiver listening", timeout=10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
