"""Open WebSocket connections and the channels each one watches.

The registry is changed and read under ``EmulatorCore.lock`` (handlers register watchers,
sessions add and remove themselves); what it sends goes to each connection's ``send``,
which is safe to call from any thread (``WsSession.send`` hands it to the event loop).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Connection:
    """One client's WebSocket: its id, its user and how to send it a text frame."""

    id: str
    user_id: str
    send: Callable[[str], None]
    close: Callable[[], None] = lambda: None
    watching: set[str] = field(default_factory=set)


class Hub:
    """``connection_id -> Connection`` and ``cid -> connection ids`` watching it."""

    def __init__(self) -> None:
        self.connections: dict[str, Connection] = {}
        self.watchers: dict[str, set[str]] = {}

    def add(self, connection: Connection) -> None:
        """Register an open connection."""
        self.connections[connection.id] = connection

    def remove(self, connection_id: str) -> Connection | None:
        """Forget a closed connection and stop it watching; return it if it was known."""
        connection = self.connections.pop(connection_id, None)
        if connection is not None:
            for cid in list(connection.watching):
                self.unwatch(connection_id, cid)
        return connection

    def connection_of(self, connection_id: str | None, user_id: str | None) -> Connection | None:
        """The open connection of that id, if it belongs to ``user_id`` (server-side: any)."""
        if not connection_id:
            return None
        connection = self.connections.get(connection_id)
        if connection is None or (user_id is not None and connection.user_id != user_id):
            return None
        return connection

    def watch(self, connection: Connection, cid: str) -> bool:
        """Make the connection a watcher of ``cid``; True when it was not one yet."""
        if cid in connection.watching:
            return False
        connection.watching.add(cid)
        self.watchers.setdefault(cid, set()).add(connection.id)
        return True

    def unwatch(self, connection_id: str, cid: str) -> bool:
        """Stop the connection watching ``cid``; True when it was watching."""
        ids = self.watchers.get(cid)
        if ids is None or connection_id not in ids:
            return False
        ids.discard(connection_id)
        if not ids:
            del self.watchers[cid]
        connection = self.connections.get(connection_id)
        if connection is not None:
            connection.watching.discard(cid)
        return True

    def watching(self, cid: str) -> list[Connection]:
        """The connections watching ``cid``."""
        return [self.connections[i] for i in self.watchers.get(cid, ()) if i in self.connections]

    def watcher_ids(self, cid: str) -> list[str]:
        """The users watching ``cid`` (each once), sorted."""
        return sorted({c.user_id for c in self.watching(cid)})

    def watcher_count(self, cid: str) -> int:
        """How many users watch ``cid`` (Stream counts users, not connections)."""
        return len(self.watcher_ids(cid))

    def has_watchers(self, cid: str | None) -> bool:
        """Whether an event of ``cid`` has anyone to go to."""
        return bool(cid) and bool(self.watchers.get(cid or ""))

    def online(self, user_id: str) -> bool:
        """Whether the user has an open connection."""
        return any(c.user_id == user_id for c in self.connections.values())

    def deliver(self, cid: str, shape: Callable[[Connection], dict[str, Any]]) -> None:
        """Send each watcher of ``cid`` its copy of an event."""
        for connection in self.watching(cid):
            connection.send(json.dumps(shape(connection), separators=(",", ":")))

    def close_all(self) -> None:
        """Close every connection and forget them (the emulator is reset or stopping)."""
        for connection in list(self.connections.values()):
            connection.close()
        self.connections.clear()
        self.watchers.clear()
