"""``stream-outbox inbound sync``: nothing lost when webhooks are.

Stream retries a webhook only a few times. The catch-up reads Stream's own state, level-
triggered: the channels whose newest message is at or after ``since`` (QueryChannels by
``last_message_at``), then each one's messages, newest pages first, back to the first page
that reaches before ``since``. Each message found becomes an inbox row shaped like the
webhook Stream would have sent (``message.new``; ``message.updated`` for an edited one,
``message.deleted`` for a deleted one), its ``webhook_id`` ``sync:{id}:{time}`` so that a
second run, or the run after, stores nothing twice; the runner applies them. So does each
member's read state of those channels (``message.read``, ``sync:read:{cid}:{user}:{time}``).

The events are marked ``sync``: they say nothing of who called, so the applier decides by
the database's state alone (a message of the app's is no echo then: a client's edit or
deletion of it is found too, and the mirror's own sends write nothing, being in step).

Reached only this way: an edit or deletion of a message older than the pages read (a
channel's newest message is its cursor), a read of a channel with no message since
``since``; never: a hard deletion (Stream's state keeps no trace of the message).
``since`` defaults to when the previous catch-up started (an audit entry), less a minute;
the first time, to the newest event stored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine

from stream_outbox.worker.errors import AdminError
from stream_outbox.worker.inbound.inbox import Inbox
from stream_outbox.worker.inbound.inbox_event import InboxEvent, event_from
from stream_outbox.worker.settings import Settings
from stream_outbox.worker.store import audit
from stream_outbox.worker.stream.limits import MESSAGES_PER_QUERY, QUERY_CHANNELS_PER_CALL
from stream_outbox.worker.stream.times import parse_time, stream_time

__all__ = [
    "SYNC_ACTION",
    "SyncResult",
    "default_since",
    "read_events",
    "sync",
    "sync_events",
]

log = logging.getLogger(__name__)
SYNC_ACTION = "inbound_sync"
# How far a catch-up reaches back before the previous one started (clocks, late commits)
OVERLAP = timedelta(minutes=1)


class _Reader(Protocol):
    def channels_with_messages_since(
        self, since: str, *, offset: int = 0
    ) -> list[dict[str, Any]]: ...

    def message_page(
        self, channel_type: str, channel_id: str, before: str | None = None
    ) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class SyncResult:
    """What one catch-up read and stored."""

    since: datetime
    channels: int
    messages: int
    stored: int
    reads: int = 0

    def line(self) -> str:
        """One line for the log and the command."""
        return (
            f"{self.channels} channels, {self.messages} messages, {self.reads} reads since "
            f"{self.since.isoformat()}: {self.stored} new inbox rows"
        )


def _found_in(cid: str) -> dict[str, Any]:
    """What every event found in a channel's state carries: its channel, and ``sync``
    (the applier's mark of an event that says nothing of who called)."""
    channel_type, _, channel_id = cid.partition(":")
    return {"cid": cid, "channel_type": channel_type, "channel_id": channel_id, "sync": True}


def sync_events(cid: str, message: dict[str, Any]) -> list[InboxEvent]:
    """The webhook-shaped events one message of Stream's state stands for (pure)."""
    message_id = str(message.get("id") or "")
    created, updated = message.get("created_at"), message.get("updated_at")
    deleted = message.get("deleted_at") or (updated if message.get("type") == "deleted" else None)
    base = _found_in(cid) | {"message": message, "user": message.get("user")}
    kinds: list[tuple[str, Any]] = []
    if deleted:
        kinds.append(("message.deleted", deleted))
    else:
        kinds.append(("message.new", created))
        created_at, updated_at = parse_time(created), parse_time(updated)
        if created_at and updated_at and updated_at > created_at:
            kinds.append(("message.updated", updated))
    return [
        event_from({**base, "type": kind, "created_at": at}, f"sync:{message_id}:{at}")
        for kind, at in kinds
    ]


def read_events(cid: str, reads: list[dict[str, Any]]) -> list[InboxEvent]:
    """The ``message.read`` events a channel's read state stands for (pure): one a member
    who marked it read (``last_read`` up to a ``last_read_message_id``; a read state with
    no message read, as a member's joining sets, stands for no read)."""
    events = []
    for read in reads:
        user, last_read = read.get("user") or {}, read.get("last_read")
        upto = read.get("last_read_message_id")
        if not isinstance(user, dict) or not user.get("id") or not last_read or not upto:
            continue
        payload = _found_in(cid) | {"type": "message.read", "user": {"id": user["id"]}}
        payload |= {"created_at": last_read, "last_read_message_id": upto}
        events.append(event_from(payload, f"sync:read:{cid}:{user['id']}:{last_read}"))
    return events


def _channels(reader: _Reader, since: str) -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    offset = 0
    while True:
        page = reader.channels_with_messages_since(since, offset=offset)
        for channel in page:
            if channel["cid"] not in seen:
                seen.add(channel["cid"])
                yield channel
        if len(page) < QUERY_CHANNELS_PER_CALL:
            return
        offset += len(page)


def _messages(reader: _Reader, cid: str, since: datetime) -> Iterator[dict[str, Any]]:
    """A channel's messages, newest pages first, to the page that reaches before ``since``."""
    channel_type, _, channel_id = cid.partition(":")
    before: str | None = None
    while True:
        page = reader.message_page(channel_type, channel_id, before)
        yield from page
        oldest = parse_time(page[0].get("created_at")) if page else None
        if len(page) < MESSAGES_PER_QUERY or oldest is None or oldest < since:
            return
        before = str(page[0]["id"])


def sync(engine: Engine, reader: _Reader, since: datetime) -> SyncResult:
    """Store the events Stream's state holds since ``since``; the runner applies them."""
    inbox = Inbox(engine)
    channels = messages = stored = reads = 0
    for channel in _channels(reader, stream_time(since)):
        channels += 1
        events: list[InboxEvent] = []
        for message in _messages(reader, channel["cid"], since):
            messages += 1
            events += sync_events(channel["cid"], message)
        found_reads = read_events(channel["cid"], channel.get("read") or [])
        reads += len(found_reads)
        stored += inbox.store_many(events + found_reads)
    return SyncResult(since, channels, messages, stored, reads)


def default_since(engine: Engine) -> datetime:
    """When the previous catch-up started, less a minute; else the newest event stored,
    less a minute; an :class:`AdminError` when there is neither (give ``--since``)."""
    with engine.connect() as conn:
        previous = audit.latest(conn, SYNC_ACTION)
    started = parse_time(previous.detail.get("started_at")) if previous else None
    newest = started or Inbox(engine).newest_event_at()
    if newest is None:
        raise AdminError("no catch-up ran and the inbox is empty: give --since")
    return newest - OVERLAP


def sync_from_stream(
    settings: Settings,
    engine: Engine,
    since: datetime | None = None,
    *,
    actor: str = "inbound",
    reader: _Reader | None = None,
) -> SyncResult:
    """One catch-up through ``reader`` (default: the operators' gateway, under the
    workers' shared budget), recorded in the audit (its start: the next one's default
    ``since``)."""
    from stream_outbox.worker.runtime import operator_gateway

    started = datetime.now(UTC)
    since = since if since is not None else default_since(engine)
    found = sync(engine, reader if reader is not None else operator_gateway(settings), since)
    detail: dict[str, Any] = {"since": since.isoformat(), "started_at": stream_time(started)}
    detail |= {"channels": found.channels, "messages": found.messages, "reads": found.reads}
    audit.record(engine, actor=actor, action=SYNC_ACTION, count=found.stored, detail=detail)
    return found
