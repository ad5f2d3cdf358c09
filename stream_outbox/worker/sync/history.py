"""History copy: send a conversation's messages into its channel through SendMessage, in
order, resumably (the other way in is the Stream import of export files, ``stream-outbox
history export|import``).

Messages go in ``(created_at, id)`` order, a batch at a time, each under the
deterministic id ``msg-{message id}`` (of its channel's generation: see
:mod:`stream_outbox.worker.store.channel_map`): a re-run, retry or replay finds the ones
already there (Stream rejects a duplicate id) and never duplicates one. After
each message the cursor on the channel map (of the channel's generation) moves on, so
an interrupted copy resumes after the last message it copied, and a copy of a
generation deleted or made again meanwhile stops. A long history is split over
several jobs (a continuation row in the outbox) so that one conversation never holds
a worker for long, nor its lock past the lease. A message Stream refuses for itself
(too long for the channel type) fails alone, in a ``message`` row of its own, and the
copy goes on past it.

Stream's server-side send sets ``created_at`` itself (its documentation allows
client timestamps only in the dashboard's import file format), so the original
time travels in the custom field ``original_created_at``; imported messages are
sent ``silent`` (no notifications, no unread counts for old messages).

After a history export (:mod:`stream_outbox.worker.store.cutover`), the messages up to its watermark
are in the import files: this path sends only the later ones. Messages born in Stream (the
message map) are there already: the copy passes them without a call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import DesiredMessage
from stream_outbox.app_hooks.capture import write_changes
from stream_outbox.app_hooks.changes import Change, Target
from stream_outbox.worker.errors import BadSourceData, PermanentStreamError
from stream_outbox.worker.runtime import Runtime
from stream_outbox.worker.store import message_map
from stream_outbox.worker.store.channel_map import StaleChannel
from stream_outbox.worker.store.cutover import current_cutover
from stream_outbox.worker.store.repository import ChannelRef
from stream_outbox.worker.stream.answers import refuses_the_message
from stream_outbox.worker.sync.bodies import SYSTEM_USER, SYSTEM_USER_ID, author_of, message_body
from stream_outbox.worker.sync.users import ensure_users

__all__ = ["BATCH", "PER_JOB", "copy_history"]

BATCH = 100
PER_JOB = 1000


def copy_history(
    rt: Runtime, conversation_id: str, ref: ChannelRef, deadline: float | None = None
) -> int:
    """Copy the next messages of a conversation into ``ref``; returns how many it took
    (sent, or refused alone).

    Writes a continuation row when more remain after :data:`PER_JOB` messages, or at
    ``deadline`` (a :func:`time.monotonic` time; by default half the lock lease from now)
    or when the worker is stopping, each time with one message sent at least: the job
    ends well inside its locks' lease. A message Stream refuses for itself (too long)
    gets a failed row of its own, and the copy goes on. The copy stops for good when
    ``ref``'s generation of the channel is gone (deleted, or made again: the newer one's
    history row copies it).
    """
    _refuse_undated(rt, conversation_id)
    since = _imported_until(rt, ref)
    if deadline is None:
        deadline = time.monotonic() + rt.settings.lock_lease.total_seconds() / 2
    copy = _Copy(rt, conversation_id, ref, deadline)
    try:
        complete = copy.run(since)
    except StaleChannel:
        return copy.done
    if not complete:
        with rt.engine.begin() as conn:
            target = Target("conversation", conversation_id)
            write_changes(conn, [Change(target, "history", {"history": True})])
    return copy.done


@dataclass
class _Copy:
    """One job's part of a conversation's history copy: how far it got, when it stops."""

    rt: Runtime
    conversation_id: str
    ref: ChannelRef
    deadline: float
    done: int = 0
    system_ready: bool = False

    def run(self, since: datetime | None) -> bool:
        """Copy batch after batch; whether the channel now holds the whole history."""
        channels, generation = self.rt.repo.channels, self.ref.generation
        while self.done < PER_JOB:
            cursor = channels.history_cursor(self.conversation_id, generation)
            with self.rt.engine.connect() as conn:
                batch = reads.messages_after(
                    self.rt.binding, conn, self.conversation_id, cursor, BATCH, since
                )
                born = set(message_map.stream_ids(conn, [m.id for m in batch]))
            if not batch:
                if self.ref.copying:  # a reopened channel has all its messages: live ones go
                    channels.end_history_copy(self.conversation_id, generation)
                return True
            if not self._send(batch, born):
                return False
        return False

    def _send(self, batch: list[DesiredMessage], born: set[str]) -> bool:
        """Send a batch in order, the cursor moved past each message as it goes (a retry
        resumes after the last one, each send being a call Stream counts); ``False`` when
        the job's time ran out first. Those ``born`` in Stream are passed, not sent."""
        senders = sorted(
            {m.sender_id for m in batch if m.sender_id is not None and m.id not in born}
        )
        present = ensure_users(self.rt, senders)  # not those the database no longer holds
        # Every body first: an id Stream cannot take fails the batch before any is sent
        generation = self.ref.generation
        bodies = [
            message_body(m, silent=True, present=present, generation=generation) for m in batch
        ]
        authors = [author_of(m, present) for m in batch]
        if not self.system_ready and SYSTEM_USER_ID in authors:
            self.rt.gateway.upsert_users([SYSTEM_USER])
            self.system_ready = True
        for message, body, author in zip(batch, bodies, authors, strict=True):
            if self.done and (time.monotonic() > self.deadline or self.rt.stopping.is_set()):
                return False
            if message.id in born:
                self._passed(message)
            else:
                self._send_one(message, body, author)
            self.done += 1
        return True

    def _send_one(self, message: DesiredMessage, body: dict[str, Any], author: str) -> None:
        """Send one message; one Stream refuses for itself fails in a row of its own."""
        ref = self.ref
        try:
            self.rt.gateway.send_message(ref.channel_type, ref.channel_id, body, author)
        except PermanentStreamError as exc:
            if not refuses_the_message(exc):
                raise
            payload = {"conversation_id": self.conversation_id, "history": True}
            target = Target("message", message.id)
            self.rt.repo.add_failed(target, "history", payload, exc.describe())
        self._passed(message)

    def _passed(self, message: DesiredMessage) -> None:
        """Move the cursor past a message (sent, refused alone, or born in Stream)."""
        if message.created_at is not None:  # undated ones are refused up front
            self.rt.repo.channels.set_history_cursor(
                self.conversation_id, self.ref.generation, message.created_at, message.id
            )


def _refuse_undated(rt: Runtime, conversation_id: str) -> None:
    """Refuse, before anything is sent, a history holding a message without ``created_at``.

    The cursor is ``(created_at, id)``: such a message sorts after every dated one and
    no cursor comparison ever returns it, so it would be skipped without a word. The
    conversation's row fails with this error until the message has a time.
    """
    with rt.engine.connect() as conn:
        undated = reads.undated_message(rt.binding, conn, conversation_id)
    if undated is not None:
        raise BadSourceData(
            f"message {undated} of conversation {conversation_id} has no created_at: "
            "the history copy orders messages by it; set it, then replay the row"
        )


def _imported_until(rt: Runtime, ref: ChannelRef) -> datetime | None:
    """Up to when the Stream import carries the channel's messages: the watermark, when
    the latest export carried this channel (one it skipped, deleted or without members
    then, gets all its messages here); None for a channel of a later generation (created
    again after Stream deleted it, import and all). An export recorded by an older
    release did not mark its channels: it carried every channel of generation 0."""
    cutover = current_cutover(rt.engine)
    return cutover.watermark if cutover is not None and cutover.imports_messages_of(ref) else None
