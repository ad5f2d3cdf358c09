"""Stream's webhooks as tests and benchmarks send them: events shaped as in Stream's
``webhook_events`` docs, signed with the API secret, and a receiver served over HTTP; a
conversation of the reference app whose channel the inbound side knows."""

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
from sqlalchemy import Connection, insert
from starlette.types import ASGIApp

from stream_outbox.app_hooks.outbox import channel_map
from stream_outbox.app_hooks.reference import Conversation, ConversationParticipant, User
from tests.support.processes import free_port, wait_for
from tests.support.settings import API_KEY, API_SECRET

__all__ = ["message_event", "post_event", "serve_app", "sign", "two_in_a_conversation"]


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
    with_id: bool = True,
) -> requests.Response:
    """POST one event as Stream does (signed unless ``secret`` is None or ``signature``
    is given; without ``X-Webhook-Id`` unless ``with_id``)."""
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Webhook-Attempt": "1",
        "X-Api-Key": key,
    }
    if with_id:
        headers["X-Webhook-Id"] = webhook_id or str(uuid.uuid4())
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


def two_in_a_conversation(conn: Connection, cid: str) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """Two users of the reference app in one conversation whose channel (in the channel
    map) is ``cid``: their ids and the conversation's."""
    first, second, conversation = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    users = [{"id": u, "email": f"{u}@example.com"} for u in (first, second)]
    conn.execute(insert(User), users)
    conn.execute(insert(Conversation).values(id=conversation))
    conn.execute(
        insert(ConversationParticipant),
        [{"conversation_id": conversation, "user_id": u} for u in (first, second)],
    )
    kind, _, channel_id = cid.partition(":")
    conn.execute(
        insert(channel_map).values(
            conversation_id=str(conversation), channel_type=kind, channel_id=channel_id
        )
    )
    return first, second, conversation
