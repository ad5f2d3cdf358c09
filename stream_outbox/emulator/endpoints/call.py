"""The request context handed to endpoint handlers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream_outbox.emulator.importing.tasks import ImportBook
from stream_outbox.emulator.rules.errors import input_error
from stream_outbox.emulator.rules.limits import RateLimits
from stream_outbox.emulator.state.hub import Connection, Hub
from stream_outbox.emulator.state.store import Store

# Events that go to WebSocket watchers only, never to webhooks.
WEBSOCKET_ONLY = frozenset(
    {"typing.start", "typing.stop", "user.watching.start", "user.watching.stop"}
)
LIVE_ONLY = "_live_only"  # the mark of an event for watchers only (not sent)


@dataclass
class Call:
    """One API call after routing, authentication and rate limiting."""

    store: Store
    body: dict[str, Any]
    query: dict[str, str]
    params: tuple[str, ...]
    now: str
    channel_types: frozenset[str]
    limits: RateLimits
    clock: float = 0.0  # wall-clock seconds of the call (``now`` as a number)
    task_seconds: float = 0.0
    imports: ImportBook = field(default_factory=ImportBook)
    host: str = ""  # the Host header, for URLs the emulator hands out
    actor: str | None = None  # the user of a client-side (user-token) call; None: server-side
    events: list[dict[str, Any]] = field(default_factory=list)  # for webhooks and watchers
    hub: Hub = field(default_factory=Hub)  # the open WebSocket connections
    connection_id: str | None = None  # the caller's WebSocket (``connection_id`` query)

    def emit(
        self,
        event_type: str,
        build: Callable[[], dict[str, Any]],
        cid: str | None = None,
        *,
        live_only: bool = False,
    ) -> None:
        """Record an event, built only when a webhook wants its type (not ``live_only``)
        or a WebSocket may hear of it (its channel ``cid`` is watched; a member's
        connection elsewhere gets a ``notification.*``)."""
        hookable = not live_only and event_type not in WEBSOCKET_ONLY
        hooked = hookable and self.store.hook_urls(event_type)
        if hooked or (cid is not None and bool(self.hub.connections)):
            event = build()
            if not hookable:
                event[LIVE_ONLY] = True
            self.events.append(event)

    def connection(self) -> Connection | None:
        """The caller's open WebSocket connection, if the call names one of its own."""
        return self.hub.connection_of(self.connection_id, self.actor)

    def payload(self) -> dict[str, Any]:
        """Decode the ``payload`` query parameter GET endpoints use for their options."""
        raw = self.query.get("payload")
        if raw is None:
            return {}
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise input_error("payload is not valid JSON") from exc
        if not isinstance(value, dict):
            raise input_error("payload must be a JSON object")
        return value

    def option(self, name: str, default: Any = None) -> Any:
        """A body field, falling back to a query parameter of the same name."""
        if name in self.body:
            return self.body[name]
        return self.query.get(name, default)


Handler = Callable[[Call], dict[str, Any]]
