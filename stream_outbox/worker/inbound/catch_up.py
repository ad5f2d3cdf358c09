"""``stream-outbox inbound sync``: nothing lost when webhooks are.

Stream retries a webhook only a few times. The catch-up reads Stream's own state, level-
triggered: the channels whose newest message is at or after ``since`` (QueryChannels by
``last_message_at``), then each one's messages, newest pages first, back to the first page
that reaches before ``since``. Each message found becomes an inbox row shaped like the
webhook Stream would have sent (``message.new``; ``message.updated`` for an edited one,
``message.deleted`` for a deleted one), its ``webhook_id`` ``sync:{id}:{time}`` so that a
second run, or the run after, stores nothing twice; the runner applies them.

Reached only this way: an edit or deletion of a message older than the pages read (a
channel's newest message is its cursor). ``since`` defaults to when the previous catch-up
started (an audit entry), less a minute; the first time, to the newest event stored.
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
from stream_outbox.worker.inbound.inbox_event import InboxEvent, event_from, parse_time
from stream_outbox.worker.settings import Settings
from stream_outbox.worker.store import audit
from stream_outbox.worker.stream.limits import MESSAGES_PER_QUERY, QUERY_CHANNELS_PER_CALL

__all__ = ["SYNC_ACTION", "SyncResult", "default_since", "stream_time", "sync", "sync_events"]

log = logging.getLogger(__name__)
SYNC_ACTION = "inbound_sync"
# How far a catch-up reaches back before the previous one started (clocks, late commits)
OVERLAP = timedelta(minutes=1)


class _Reader(Protocol):
    def channels_with_messages_since(self, since: str, *, offset: int = 0) -> list[str]: ...

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

    def line(self) -> str:
        """One line for the log and the command."""
        return (
            f"{self.channels} channels, {self.messages} messages since "
            f"{self.since.isoformat()}: {self.stored} new inbox rows"
        )


def stream_time(moment: datetime) -> str:
    """A time as Stream writes one (RFC 3339, UTC, microseconds, ``Z``)."""
    text = moment.astimezone(UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


def sync_events(cid: str, message: dict[str, Any]) -> list[InboxEvent]:
    """The webhook-shaped events one message of Stream's state stands for (pure)."""
    message_id = str(message.get("id") or "")
    created, updated = message.get("created_at"), message.get("updated_at")
    deleted = message.get("deleted_at") or (updated if message.get("type") == "deleted" else None)
    channel_type, _, channel_id = cid.partition(":")
    base: dict[str, Any] = {"cid": cid, "channel_type": channel_type, "channel_id": channel_id}
    base |= {"message": message, "user": message.get("user"), "sync": True}
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


def _channels(reader: _Reader, since: str) -> Iterator[str]:
    seen: set[str] = set()
    offset = 0
    while True:
        page = reader.channels_with_messages_since(since, offset=offset)
        for cid in page:
            if cid not in seen:
                seen.add(cid)
                yield cid
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
    channels = messages = stored = 0
    for cid in _channels(reader, stream_time(since)):
        channels += 1
        events: list[InboxEvent] = []
        for message in _messages(reader, cid, since):
            messages += 1
            events += sync_events(cid, message)
        stored += inbox.store_many(events)
    return SyncResult(since, channels, messages, stored)


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
    detail |= {"channels": found.channels, "messages": found.messages}
    audit.record(engine, actor=actor, action=SYNC_ACTION, count=found.stored, detail=detail)
    return found
