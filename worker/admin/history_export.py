"""History export: the database's chat up to a watermark, in Stream's import format.

Stream's own migration path (``docs/migrating/import.md``): JSON Lines of
``{"type": T, "data": {...}}`` items, users first, then channels, members and messages;
every referenced id in the file (or already in Stream); timestamps in RFC 3339; at
most 300 MB a file. The messages keep their original ``created_at`` and the ids the
live path gives them (``msg-{id}``), so a message is never both imported and sent;
channels get the ids the live path uses (assigned in the channel map now, if new).

Everything is read in pages (users, conversations, each conversation's messages), so
memory grows with the number of users and channels (the references checked), not
with the number of messages. Each item is checked against Stream's rules before it is
written; the first that breaks one stops the export with a one-line error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Engine

from app_hooks.binding import Binding, DesiredChannel
from app_hooks.channel_ids import (
    InvalidStreamId,
    validate_channel_id,
    validate_message_id,
)
from worker.errors import BadSourceData, StreamOutboxError
from worker.store.repository import ChannelRef, OutboxRepository
from worker.stream.limits import data_too_large
from worker.sync.bodies import SYSTEM_USER, SYSTEM_USER_ID, author_of
from worker.sync.conversations import channel_candidates
from worker.sync.users import user_refusal

__all__ = ["MAX_FILE_BYTES", "ExportResult", "export_history", "rfc3339"]

MAX_FILE_BYTES = 300 * 1000 * 1000  # Stream's upload limit
_PAGE = 500


def _utc(moment: datetime) -> datetime:
    """An aware time (a naive one taken as UTC), in UTC."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    """A time as Stream's import wants it: RFC 3339 in UTC (``2024-01-01T10:00:00.5Z``)."""
    return _utc(moment).isoformat().replace("+00:00", "Z")


@dataclass
class ExportResult:
    """What an export wrote."""

    files: list[Path] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


class _Writer:
    """JSON Lines in files of at most ``max_bytes``, in order; checks each item's references."""

    def __init__(self, out_dir: Path, max_bytes: int) -> None:
        self.out_dir, self.max_bytes = out_dir, max_bytes
        self.result = ExportResult()
        self.users: set[str] = set()
        self.channels: set[str] = set()
        self._file: TextIO | None = None
        self._size = 0

    def write(self, kind: str, data: dict[str, Any]) -> None:
        line = json.dumps({"type": kind, "data": data}, ensure_ascii=False, separators=(",", ":"))
        size = len(line.encode()) + 1
        if size > self.max_bytes:
            raise BadSourceData(f"one {kind} item is {size} bytes, over the file limit")
        out = self._file
        if out is None or self._size + size > self.max_bytes:
            out = self._next_file()
        out.write(line + "\n")
        self._size += size
        self.result.counts[kind] = self.result.counts.get(kind, 0) + 1

    def _next_file(self) -> TextIO:
        self.close()
        path = self.out_dir / f"history-{len(self.result.files) + 1:04d}.jsonl"
        self._file = out = path.open("w", encoding="utf-8")
        self._size = 0
        self.result.files.append(path)
        return out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def export_history(
    engine: Engine,
    binding: Binding,
    repo: OutboxRepository,
    out_dir: Path,
    *,
    watermark: datetime,
    max_bytes: int = MAX_FILE_BYTES,
) -> ExportResult:
    """Write the users, channels, members and messages (created at or before
    ``watermark``) as Stream import files in ``out_dir``; :class:`BadSourceData` names
    the first item Stream would refuse."""
    if watermark.tzinfo is None:
        raise StreamOutboxError("the watermark needs a time zone (UTC when in doubt)")
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = _Writer(out_dir, max_bytes)
    try:
        _users(engine, binding, writer)
        channels = list(_channels(engine, binding, repo, writer))
        for channel, ref, read in channels:
            for member in channel.members:
                _require(member in writer.users, f"member {member} of {ref.channel_id}: no user")
                data = {"channel_type": ref.channel_type, "channel_id": ref.channel_id}
                if member in read:  # else Stream takes every imported message as read
                    data["last_read"] = rfc3339(read[member])
                writer.write("member", {**data, "user_id": member})
        for channel, ref, _ in channels:
            _messages(engine, binding, writer, channel.conversation_id, ref, watermark)
    finally:
        writer.close()
    return writer.result


def _require(ok: bool, why: str) -> None:
    if not ok:
        raise BadSourceData(f"import item refused: {why}")


def _checked(check: Any, value: str, what: str) -> str:
    try:
        return str(check(value))
    except InvalidStreamId as exc:
        raise BadSourceData(f"{what}: {exc}") from None


def _users(engine: Engine, binding: Binding, writer: _Writer) -> None:
    writer.write("user", dict(SYSTEM_USER))  # the author of system messages
    writer.users.add(SYSTEM_USER_ID)
    after: str | None = None
    while True:
        with engine.connect() as conn:
            ids = binding.ids_after(conn, "user", after, _PAGE)
            desired = binding.desired_users(conn, ids)
        if not ids:
            return
        for user_id in ids:
            if user_id not in desired:
                continue
            data = desired[user_id].as_stream()
            refused = user_refusal(user_id, data)
            _require(refused is None, str(refused))
            writer.write("user", data)
            writer.users.add(user_id)
        after = ids[-1]


def _channels(
    engine: Engine, binding: Binding, repo: OutboxRepository, writer: _Writer
) -> Iterator[tuple[DesiredChannel, ChannelRef, dict[str, datetime]]]:
    """The conversations the live path would give a channel (members, or an event), each
    with the channel id the live path uses and its members' last-read times."""
    after: str | None = None
    while True:
        with engine.connect() as conn:
            ids = binding.ids_after(conn, "conversation", after, _PAGE)
            desired = binding.desired_channels(conn, ids, legacy=True)
            reads = binding.read_states(conn, list(desired))
        if not ids:
            return
        wanted = {
            cid: channel_candidates(channel)
            for cid, channel in desired.items()
            if channel.created_by is not None
        }
        refs = repo.assign_channels(wanted)
        for cid in ids:
            channel, ref = desired.get(cid), refs.get(cid)
            if channel is None or ref is None or channel.created_by is None:
                continue
            _checked(validate_channel_id, ref.channel_id, f"conversation {cid}")
            _require(channel.created_by in writer.users, f"creator of {cid}: no user")
            data = {"id": ref.channel_id, "type": ref.channel_type, **channel.data}
            refused = data_too_large("channel", ref.channel_id, channel.data)
            _require(refused is None, str(refused))
            writer.write("channel", {**data, "created_by": channel.created_by})
            writer.channels.add(f"{ref.channel_type}:{ref.channel_id}")
            yield channel, ref, reads.get(cid, {})
        after = ids[-1]


def _messages(
    engine: Engine,
    binding: Binding,
    writer: _Writer,
    conversation_id: str,
    ref: ChannelRef,
    watermark: datetime,
) -> None:
    cursor: tuple[datetime, str] | None = None
    while True:
        with engine.connect() as conn:
            page = binding.messages_after(conn, conversation_id, cursor, _PAGE)
        for message in page:
            if message.created_at is None:
                raise BadSourceData(
                    f"message {message.id} of conversation {conversation_id} has no created_at"
                )
            if _utc(message.created_at) > watermark:
                return
            author = author_of(message, writer.users)
            data: dict[str, Any] = {
                "id": _checked(validate_message_id, message.stream_id, f"message {message.id}"),
                "channel_type": ref.channel_type,
                "channel_id": ref.channel_id,
                "user": author,
                "text": message.text,
                "type": "regular",  # a system message too: flagged `system`, as the live path
                "created_at": rfc3339(message.created_at),
            }
            if message.sender_id is None:
                data["system"] = True
            elif author == SYSTEM_USER_ID:  # a sender no longer in the database
                data["original_user_id"] = message.sender_id
            writer.write("message", data)
            cursor = (message.created_at, message.id)
        if len(page) < _PAGE:
            return
