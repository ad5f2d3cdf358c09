"""History copy: send a conversation's messages into its channel through SendMessage, in
order, resumably (the other way in is the Stream import of export files, ``stream-outbox
history export|import``).

Messages go in ``(created_at, id)`` order, a batch at a time, each under the
deterministic id ``msg-{message id}`` (of its channel's generation: see
:mod:`stream_outbox.worker.store.channel_map`): a re-run, retry or replay finds the ones
already there (Stream rejects a duplicate id) and never duplicates one. After
each batch the cursor on the channel map moves on, so an interrupted copy
resumes after the last message it copied. A long history is split over several
jobs (a continuation row in the outbox) so that one conversation never holds a
worker for long.

Stream's server-side send sets ``created_at`` itself (its documentation allows
client timestamps only in the dashboard's import file format), so the original
time travels in the custom field ``original_created_at``; imported messages are
sent ``silent`` (no notifications, no unread counts for old messages).

After a history export (:mod:`stream_outbox.worker.store.cutover`), the messages up to its watermark
are in the import files: this path sends only the later ones.
"""

from __future__ import annotations

from datetime import datetime

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import DesiredMessage
from stream_outbox.app_hooks.capture import write_changes
from stream_outbox.app_hooks.changes import Change, Target
from stream_outbox.worker.errors import BadSourceData
from stream_outbox.worker.runtime import Runtime
from stream_outbox.worker.store.cutover import current_cutover
from stream_outbox.worker.store.repository import ChannelRef
from stream_outbox.worker.sync.bodies import SYSTEM_USER, SYSTEM_USER_ID, author_of, message_body
from stream_outbox.worker.sync.users import ensure_users

__all__ = ["BATCH", "PER_JOB", "copy_history"]

BATCH = 100
PER_JOB = 1000


def copy_history(rt: Runtime, conversation_id: str, ref: ChannelRef) -> int:
    """Copy the next messages of a conversation into ``ref``; returns how many were sent.

    Writes a continuation row when more remain after :data:`PER_JOB` messages.
    """
    _refuse_undated(rt, conversation_id)
    done = 0
    system_ready = False
    since = _imported_until(rt, ref)
    while done < PER_JOB:
        cursor = rt.repo.channels.history_cursor(conversation_id)
        with rt.engine.connect() as conn:
            batch = reads.messages_after(rt.binding, conn, conversation_id, cursor, BATCH, since)
        if not batch:
            if ref.copying:  # a reopened channel has all its messages: live ones go at once
                rt.repo.channels.end_history_copy(conversation_id)
            return done
        senders = sorted({m.sender_id for m in batch if m.sender_id is not None})
        present = ensure_users(rt, senders)  # not those the database no longer holds
        # Every body first: an id Stream cannot take fails the batch before any is sent
        bodies = [
            message_body(m, silent=True, present=present, generation=ref.generation) for m in batch
        ]
        authors = [author_of(m, present) for m in batch]
        if not system_ready and SYSTEM_USER_ID in authors:
            rt.gateway.upsert_users([SYSTEM_USER])
            system_ready = True
        sent = 0
        try:
            for body, author in zip(bodies, authors, strict=True):
                rt.gateway.send_message(ref.channel_type, ref.channel_id, body, author)
                sent += 1
        finally:
            # Stopped part-way (a 429, a timeout): the retry resumes after the last one sent,
            # instead of sending the batch's first messages again (each a call Stream counts).
            _move_cursor(rt, conversation_id, batch[:sent])
        done += len(batch)
    with rt.engine.begin() as conn:
        target = Target("conversation", conversation_id)
        write_changes(conn, [Change(target, "history", {"history": True})])
    return done


def _imported_until(rt: Runtime, ref: ChannelRef) -> datetime | None:
    """Up to when the Stream import carries the channel's messages: the watermark, when
    the latest export carried this channel (one it skipped, deleted or without members
    then, gets all its messages here); None for a channel of a later generation (created
    again after Stream deleted it, import and all). An export recorded by an older
    release did not mark its channels: it carried every channel of generation 0."""
    cutover = current_cutover(rt.engine)
    if cutover is None or ref.generation:
        return None
    if cutover.since is None or cutover.carries(ref.exported_in):
        return cutover.watermark
    return None


def _move_cursor(rt: Runtime, conversation_id: str, sent: list[DesiredMessage]) -> None:
    last = sent[-1] if sent else None
    if last is not None and last.created_at is not None:  # undated ones are refused up front
        rt.repo.channels.set_history_cursor(conversation_id, last.created_at, last.id)


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
