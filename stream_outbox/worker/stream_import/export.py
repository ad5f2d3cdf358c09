"""The export: the database's chat up to a watermark, as Stream's import files.

Stream's own migration path (``docs/migrating/import.md``): JSON Lines of
``{"type": T, "data": {...}}`` items, users first, then channels, members and messages;
every referenced id in the file (or already in Stream); timestamps in RFC 3339; at
most 300 MB a file. The messages keep their original ``created_at`` and the ids the
live path gives them (``msg-{id}``), so a message is never both imported and sent;
channels get the ids the live path uses (assigned in the channel map now, if new).

**The cut-over first.** Before the export reads anything, it records the cut-over
(:func:`~stream_outbox.worker.store.cutover.begin_export`): the watermark, and the
time just before its snapshot; from then on the Stream import is pending, and whatever
changes meanwhile is reconciled again once it is complete. Each channel written is
marked in the channel map as carried by this export (``exported_in``). The entry gets
the files and counts when the export ends.

**Bounded memory.** The whole export reads one snapshot of the database (a
``REPEATABLE READ`` transaction): users and conversations in keyset pages, then every
message up to the watermark from one server-side cursor, ordered by conversation,
``created_at`` and id, fetched in batches. What stays in memory is the ids written
(users, and each conversation's channel), to check references, never the messages.

**Checks.** Each item is checked against Stream's rules before it is written (id
patterns and lengths, data under 5 KB, references to items before it, RFC 3339
times); the first that breaks one stops the export with a one-line error. A message
of an exported conversation without ``created_at`` stops it too.

**Resumable.** Each file is written under a temporary name, renamed when complete and
recorded in ``export-state.json`` with the position after it (see
:mod:`stream_outbox.worker.stream_import.files`). Re-running the same export into the same folder
resumes after the last complete file: users, channels and members are read again (they
are few) and checked against a digest of those already written, messages continue
after the last one recorded. The files end the same as an uninterrupted run's. If the
users, channels or members changed in between, the export starts over in the folder.
A folder holding another export (another watermark or file limit, or files without a
state) is refused.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, func, literal, null, or_, select, tuple_

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import Binding, DesiredChannel
from stream_outbox.app_hooks.channel_ids import (
    InvalidStreamId,
    validate_channel_id,
    validate_message_id,
)
from stream_outbox.app_hooks.desired import stream_message_id
from stream_outbox.worker.errors import AdminError, BadSourceData, StreamOutboxError
from stream_outbox.worker.store import message_map
from stream_outbox.worker.store.cutover import (
    begin_export,
    finish_export,
    recorded_export,
    utc,
)
from stream_outbox.worker.store.repository import ChannelRef, OutboxRepository
from stream_outbox.worker.stream.limits import data_too_large
from stream_outbox.worker.stream_import.files import (
    FILE_GLOB,
    ExportFiles,
    ExportState,
    ReferencesChanged,
    read_state,
)
from stream_outbox.worker.sync.bodies import SYSTEM_USER, SYSTEM_USER_ID
from stream_outbox.worker.sync.plan import channel_candidates
from stream_outbox.worker.sync.users import user_refusal

__all__ = [
    "MAX_FILE_BYTES",
    "ExportResult",
    "Progress",
    "export_history",
    "resumed_watermark",
    "rfc3339",
]

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 300 * 1000 * 1000  # Stream's upload limit
_PAGE = 2000  # users or conversations per read
_BATCH = 10_000  # messages per fetch from the cursor, and per progress report


class Progress(Protocol):
    """Told how many items of a kind are written so far (of how many, when known)."""

    def __call__(self, kind: str, *, done: int, total: int | None) -> None: ...


def _silent(kind: str, *, done: int, total: int | None) -> None:
    """A progress nobody watches."""


_encode = encode_basestring  # a JSON string, as json.dumps(ensure_ascii=False) writes it


def rfc3339(moment: datetime) -> str:
    """A time as Stream's import wants it: RFC 3339 in UTC (``2024-01-01T10:00:00.5Z``)."""
    return utc(moment).isoformat().replace("+00:00", "Z")


def _line(kind: str, data: dict[str, Any]) -> bytes:
    text = json.dumps({"type": kind, "data": data}, ensure_ascii=False, separators=(",", ":"))
    return (text + "\n").encode()


@dataclass
class ExportResult:
    """What an export wrote (all its files, also those of an earlier, interrupted run);
    ``already_complete``: the folder held the complete export, nothing was written."""

    watermark: str
    files: list[Path] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    already_complete: bool = False

    def detail(self) -> dict[str, Any]:
        """The watermark, files and counts, JSON-ready (the audit entry the cut-over reads)."""
        return {
            "watermark": self.watermark,
            "files": [str(path) for path in self.files],
            "counts": self.counts,
        }


# The default watermark lies this far in the past: a transaction that stamped a message
# before it has committed by the time the export reads (one still open would miss both
# the files and, with a time at or before the watermark, the live mirror's timeline).
DEFAULT_LAG = timedelta(minutes=1)


def resumed_watermark(out_dir: Path) -> datetime:
    """The watermark of the export in ``out_dir`` (to resume it), else a minute ago."""
    state = read_state(out_dir) if out_dir.is_dir() else None
    return datetime.fromisoformat(state.watermark) if state else datetime.now(UTC) - DEFAULT_LAG


def export_history(
    engine: Engine,
    binding: Binding,
    repo: OutboxRepository,
    out_dir: Path,
    *,
    watermark: datetime,
    max_bytes: int = MAX_FILE_BYTES,
    progress: Progress | None = None,
    actor: str = "stream-outbox",
) -> ExportResult:
    """Write the users, channels, members and messages (created at or before
    ``watermark``) as Stream import files in ``out_dir``, resuming an interrupted export
    there; :class:`BadSourceData` names the first item Stream would refuse.

    The cut-over is recorded in the audit table (by ``actor``) before anything is read;
    an export found complete already is not recorded again."""
    if watermark.tzinfo is None:
        raise StreamOutboxError("the watermark needs a time zone (UTC when in doubt)")
    out_dir.mkdir(parents=True, exist_ok=True)
    state = _state_for(out_dir, rfc3339(watermark), max_bytes)
    already_complete = state.complete
    folder = str(out_dir.resolve())
    if already_complete:
        with engine.connect() as conn:
            cutover = recorded_export(conn, watermark=state.watermark, folder=folder)
        if cutover is None or not cutover.exporting:  # recorded as it ended, or another's
            files = [out_dir / entry["name"] for entry in state.files]
            return ExportResult(state.watermark, files, dict(state.counts), True)
        # Complete, but stopped before it recorded its files: record them now
    else:
        cutover = begin_export(engine, watermark=state.watermark, folder=folder, actor=actor)
        run = _Run(engine, binding, repo, watermark, progress or _silent, cutover.export_id)
        try:
            run.export(ExportFiles(out_dir, state))
        except ReferencesChanged:
            log.warning("users, channels or members changed since the export began: starting over")
            state = ExportState(state.watermark, max_bytes)
            run.export(ExportFiles(out_dir, state))
    files = [out_dir / entry["name"] for entry in state.files]
    result = ExportResult(state.watermark, files, dict(state.counts), already_complete)
    finish_export(engine, cutover.export_id, result.detail(), result.counts.get("message", 0))
    return result


def _state_for(out_dir: Path, watermark: str, max_bytes: int) -> ExportState:
    """The folder's export to resume, or a new one; another export's folder is refused."""
    state = read_state(out_dir)
    if state is None:
        if any(out_dir.glob(FILE_GLOB)):
            raise AdminError(
                f"{out_dir} holds history files of another export: use an empty folder"
            )
        return ExportState(watermark, max_bytes)
    if state.watermark != watermark:
        raise AdminError(
            f"{out_dir} holds an export up to {state.watermark}, not {watermark}: "
            "use another folder, or the same watermark to resume it"
        )
    if state.max_bytes != max_bytes:
        raise AdminError(
            f"{out_dir} holds an export in files of at most {state.max_bytes} bytes, "
            f"not {max_bytes}: use another folder, or the same limit to resume it"
        )
    for entry in state.files:
        path = out_dir / entry["name"]
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            raise AdminError(f"{path} is not the file the export wrote: export into another folder")
    return state


def _require(ok: bool, why: str) -> None:
    if not ok:
        raise BadSourceData(f"import item refused: {why}")


def _checked(check: Any, value: str, *, what: str) -> str:
    try:
        return str(check(value))
    except InvalidStreamId as exc:
        raise BadSourceData(f"{what}: {exc}") from None


class _Run:
    """One pass over the database's snapshot, writing what the files do not hold yet."""

    def __init__(
        self,
        engine: Engine,
        binding: Binding,
        repo: OutboxRepository,
        watermark: datetime,
        progress: Progress,
        export_id: int,
    ) -> None:
        self.engine, self.binding, self.repo = engine, binding, repo
        self.watermark, self.progress, self.export_id = watermark, progress, export_id
        self.users: set[str] = set()
        self.channels: dict[str, ChannelRef] = {}  # by conversation id

    def export(self, files: ExportFiles) -> None:
        """Every item in Stream's order; the files complete, or none recorded past the last."""
        self.users.clear()
        self.channels.clear()
        # Carried are the channels this pass writes (an earlier pass may have written others)
        self.repo.channels.unmark_exported(self.export_id)
        try:
            with self.engine.connect() as conn, conn.begin():
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                self._users(conn, files)
                self._channels(conn, files)
                self._members(conn, files)
                files.end_of_references()
                self._messages(conn, files)
            files.finish()
        finally:
            files.abandon()

    def _users(self, conn: Connection, files: ExportFiles) -> None:
        files.reference("user", _line("user", dict(SYSTEM_USER)))  # author of system messages
        self.users.add(SYSTEM_USER_ID)
        total = reads.count(self.binding, conn, "user") + 1
        for ids in self._pages(conn, "user"):
            desired = reads.desired_users(self.binding, conn, ids)
            for user_id in ids:
                if user_id not in desired:
                    continue
                data = desired[user_id].as_stream()
                refused = user_refusal(user_id, data)
                _require(refused is None, str(refused))
                files.reference("user", _line("user", data))
                self.users.add(user_id)
            self.progress("user", done=len(self.users), total=total)
        self.progress("user", done=len(self.users), total=len(self.users))

    def _pages(self, conn: Connection, kind: str) -> Iterator[list[str]]:
        after: str | None = None
        while ids := reads.ids_after(self.binding, conn, kind, after, _PAGE):
            yield ids
            after = ids[-1]

    def _channels(self, conn: Connection, files: ExportFiles) -> None:
        """The conversations the live path would give a channel (members, or an event),
        each with the channel id the live path uses."""
        # those without a channel are left out
        total = reads.count(self.binding, conn, "conversation")
        for ids in self._pages(conn, "conversation"):
            carried: list[str] = []
            desired = reads.desired_channels(self.binding, conn, ids, legacy=True)
            refs = self._channel_refs(conn, desired)
            for cid in ids:
                channel, ref = desired.get(cid), refs.get(cid)
                creator = None if channel is None or ref is None else _creator(channel, ref)
                if channel is None or ref is None or creator is None:
                    continue
                _checked(validate_channel_id, ref.channel_id, what=f"conversation {cid}")
                _require(creator in self.users, f"creator of {cid}: no user")
                data = {"id": ref.channel_id, "type": ref.channel_type, **channel.data}
                refused = data_too_large("channel", ref.channel_id, channel.data)
                _require(refused is None, str(refused))
                files.reference("channel", _line("channel", {**data, "created_by": creator}))
                self.channels[cid] = ref
                carried.append(cid)
            self.repo.channels.mark_exported(carried, self.export_id)
            self.progress("channel", done=len(self.channels), total=total)
        self.progress("channel", done=len(self.channels), total=len(self.channels))

    def _channel_refs(
        self, conn: Connection, desired: dict[str, DesiredChannel]
    ) -> dict[str, ChannelRef]:
        """The channel ids of conversations with a creator: the map's, else assigned now."""
        refs = self.repo.channels.channels_for(list(desired), conn)
        wanted = {
            cid: channel_candidates(channel)
            for cid, channel in desired.items()
            if channel.created_by is not None and cid not in refs
        }
        return {**refs, **self.repo.channels.assign_channels(wanted)} if wanted else refs

    def _members(self, conn: Connection, files: ExportFiles) -> None:
        """Each channel's members, in the channels' order and by user id, with their
        last-read times (without one, Stream takes every imported message as read)."""
        done = reported = 0
        rows = conn.execution_options(yield_per=_BATCH).execute(self._member_query())
        for cid, group in groupby(rows, key=lambda row: str(row[0])):
            ref = self.channels.get(cid)
            if ref is None:
                continue
            for member, last_read in sorted((str(uid), moment) for _, uid, moment in group):
                _require(member in self.users, f"member {member} of {ref.channel_id}: no user")
                data = {"channel_type": ref.channel_type, "channel_id": ref.channel_id}
                if last_read is not None:
                    data["last_read"] = rfc3339(last_read)
                files.reference("member", _line("member", {**data, "user_id": member}))
                done += 1
            if done >= reported + _BATCH:
                self.progress("member", done=(reported := done), total=None)
        self.progress("member", done=done, total=done)

    def _member_query(self) -> Any:
        """Every live member of a live user (as ``reads.members``), its last-read time
        (``reads.read_states``; none when the app keeps none), by conversation."""
        b = self.binding
        conversation, user = (
            b.column("participant", "conversation_id"),
            b.column("participant", "user_id"),
        )
        last_read = b.last_read_column()
        query = select(conversation, user, null() if last_read is None else last_read)
        if b.live("user") is not None:
            query = query.join(b.user, b.column("user", "id") == user)
        for role in ("participant", "user"):
            live = b.live(role)
            if live is not None:
                query = query.where(live)
        return query.order_by(conversation)

    def _messages(self, conn: Connection, files: ExportFiles) -> None:
        """Every live message up to the watermark (not those born in Stream: it holds them),
        by conversation, then time, then id."""
        query, total = self._message_query(files.state.last_message), self._count(conn)
        done = files.state.counts.get("message", 0)
        self.progress("message", done=done, total=total)
        rows = conn.execution_options(yield_per=_BATCH).execute(query)
        users, channels = self.users, self.channels
        current: Any = None
        fields: str | None = None
        generation = 0
        for mid, cid, sender, content, created in rows:
            if cid != current:
                ref = channels.get(str(cid))
                current, fields = cid, None if ref is None else _channel_fields(ref)
                generation = 0 if ref is None else ref.generation
            if fields is None:  # a conversation without a channel, as live
                continue
            mid = str(mid)
            if created is None:
                raise BadSourceData(f"message {mid} of conversation {cid} has no created_at")
            line = _message_line(
                mid,
                fields=fields,
                sender=sender,
                users=users,
                text=content,
                created=created,
                generation=generation,
            )
            files.message(line, (cid, created, mid))
            done += 1
            if done % _BATCH == 0:
                self.progress("message", done=done, total=total)
        self.progress("message", done=done, total=max(done, total))

    def _message_query(self, after: list[str] | None) -> Any:
        b = self.binding
        columns = [
            b.column("message", name)
            for name in ("id", "conversation_id", "sender_id", "content", "created_at")
        ]
        key, conversation, _, _, created = columns
        query = select(*columns).where(
            or_(created <= self._watermark_for(created), created.is_(None)),
            message_map.not_born_in_stream(key),  # Stream holds those already
        )
        live = b.live("message")
        if live is not None:
            query = query.where(live)
        if after is not None:
            cid, moment, mid = after
            typed_cid = b.typed_ids(conversation, [cid])[0]
            position = tuple_(conversation, created, key) > tuple_(
                literal(typed_cid),
                literal(datetime.fromisoformat(moment)),
                literal(b.typed_ids(key, [mid])[0]),
            )
            query = query.where(or_(position, (conversation == typed_cid) & created.is_(None)))
        return query.order_by(conversation, created, key)

    def _watermark_for(self, created: Any) -> datetime:
        """The watermark as the column holds times (a naive column's times are UTC)."""
        if getattr(created.type, "timezone", True):
            return self.watermark
        return self.watermark.astimezone(UTC).replace(tzinfo=None)

    def _count(self, conn: Connection) -> int:
        created = self.binding.column("message", "created_at")
        key = self.binding.column("message", "id")
        query = select(func.count()).where(
            created <= self._watermark_for(created), message_map.not_born_in_stream(key)
        )
        live = self.binding.live("message")
        query = query.select_from(self.binding.message)
        if live is not None:
            query = query.where(live)
        return int(conn.scalar(query) or 0)


def _creator(channel: DesiredChannel, ref: ChannelRef) -> str | None:
    """Who creates the channel in the file: its creator; for a channel Stream holds whose
    conversation has none now (everyone left), the system user, as the live path does:
    the file carries its messages too. None: the channel is left out, as live."""
    if channel.created_by is not None:
        return channel.created_by
    return SYSTEM_USER_ID if ref.in_stream and not ref.deleted else None


def _channel_fields(ref: ChannelRef) -> str:
    """A channel's type and id as they appear in member and message items."""
    return f'"channel_type":{_encode(ref.channel_type)},"channel_id":{_encode(ref.channel_id)}'


def _message_line(
    mid: str,
    *,
    fields: str,
    sender: Any,
    users: set[str],
    text: str | None,
    created: datetime,
    generation: int = 0,
) -> bytes:
    """A message item's line, as ``json.dumps`` writes it (see :func:`_line`): its
    ``msg-`` id, sent as its sender (the system user when it has none or Stream does not
    hold it, the sender kept in ``original_user_id``), type ``regular``, flagged ``system``
    when it has no sender, as the live path sends it."""
    stream_id = stream_message_id(mid, generation)  # the live path's id in that channel
    message_id = _checked(validate_message_id, stream_id, what=f"message {mid}")
    extra = ""
    if sender is None:
        author, extra = SYSTEM_USER_ID, ',"system":true'
    else:
        author = str(sender)
        if author not in users:  # a sender no longer in the database
            author, extra = SYSTEM_USER_ID, f',"original_user_id":{_encode(str(sender))}'
    return (
        f'{{"type":"message","data":{{"id":{_encode(message_id)},{fields},'
        f'"user":{_encode(author)},"text":{_encode(text or "")},"type":"regular",'
        f'"created_at":"{rfc3339(created)}"{extra}}}}}\n'
    ).encode()
