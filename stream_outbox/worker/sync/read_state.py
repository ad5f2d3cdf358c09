"""Read state: a participant's ``last_read_at`` in the app marks the channel read in Stream.

A conversation's ``read`` rows name who read (``{"reads": [user_id, ...]}``); the read
times themselves are read now, from the database (level-triggered: a later read, or a
participant gone, is what counts). Each reader's channel is marked read up to the newest
message at or before their ``last_read_at`` (Stream's server-side MarkRead with that
message's Stream id: ``msg-{id}``, or Stream's own for a message born there, as the
inbound side's message map records it): one call a reader. A participant who left, or
whose read time was cleared, is skipped, and so is a read before the conversation's
first message (nothing to mark: Stream keeps the channel unread). A read of a message a
pending Stream import brings is marked once the import is complete (a row of its own,
due later).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import Connection, inspect, text

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.changes import READS_KEY
from stream_outbox.app_hooks.desired import DesiredMessage
from stream_outbox.worker.errors import PermanentStreamError, RetryableError
from stream_outbox.worker.runtime import Runtime
from stream_outbox.worker.store.cutover import current_cutover, wait_for_import
from stream_outbox.worker.stream.answers import is_not_found

__all__ = ["NoMemberInStream", "NotInStreamYet", "mark_reads"]


class NotInStreamYet(RetryableError):
    """Stream cannot mark the read yet: the message read last is still on its way there
    (another job's); the job goes again later."""


class NoMemberInStream(NotInStreamYet):
    """Stream marked nothing: the reader is no member of the channel there (their joining
    still on its way, or removed in Stream): the channel's members need reconciling."""


def mark_reads(rt: Runtime, conversation_id: str, user_ids: Collection[str]) -> str:
    """Mark the conversation's channel read in Stream for ``user_ids`` as the database
    says they read it; returns the outcome. Nothing happens for a channel Stream does not
    hold (yet, or any more): the conversation's own reconcile creates it first."""
    if not user_ids:
        return "no reads"
    with rt.engine.connect() as conn:
        ref = rt.repo.channels.channel_for(conversation_id, conn)
        if ref is None or ref.deleted or not ref.in_stream:
            return "no channel in Stream: no read marked"
        times = reads.last_reads(rt.binding, conn, conversation_id, user_ids)
        newest = {
            moment: reads.newest_message_at(rt.binding, conn, conversation_id, moment)
            for moment in set(times.values())
        }
        found = [message for message in newest.values() if message is not None]
        stream_ids = _stream_ids(conn, found, ref.generation)
    cutover = current_cutover(rt.engine)
    if cutover is not None and not (cutover.pending and cutover.imports_messages_of(ref)):
        cutover = None  # no import to bring this channel's messages
    marked, waiting = [], []
    for user_id in sorted(user_ids):
        moment = times.get(user_id)
        message = None if moment is None else newest[moment]
        if message is None:  # left, read cleared, or read before the first message
            continue
        if cutover is not None and cutover.covers(message.created_at):
            waiting.append(user_id)  # the import brings the message: marked after it
            continue
        stream_id = stream_ids[message.id]
        try:
            held = rt.gateway.mark_read(ref.channel_type, ref.channel_id, user_id, stream_id)
        except PermanentStreamError as exc:
            if not is_not_found(exc):
                raise
            raise NotInStreamYet(
                f"{ref.channel_type}:{ref.channel_id}: message {stream_id} read by {user_id} "
                "is not in Stream yet"
            ) from None
        if not held:
            raise NoMemberInStream(
                f"{ref.channel_type}:{ref.channel_id}: {user_id} is no member in Stream"
            )
        marked.append(user_id)
    outcome = f"read marked for {len(marked)}"
    if waiting:
        after = wait_for_import(rt.engine, "conversation", conversation_id, {READS_KEY: waiting})
        outcome += f", {len(waiting)} wait for the Stream import ({after.seconds} s)"
    skipped = len(user_ids) - len(marked) - len(waiting)
    return outcome + (f", {skipped} skipped" if skipped else "")


# The inbound side's map of a message's two ids (migration 0008): a message born in
# Stream keeps Stream's id, and its database row is found there.
MESSAGE_MAP = "stream_outbox_message_map"


def _stream_ids(
    conn: Connection, messages: Sequence[DesiredMessage], generation: int
) -> dict[str, str]:
    """The Stream id of each message: the one the map records for a message born in
    Stream, else the deterministic id of an app's message in the channel's generation."""
    ids = {message.id: message.stream_id(generation) for message in messages}
    if ids and inspect(conn).has_table(MESSAGE_MAP):
        query = text(
            f"SELECT message_id, stream_id FROM {MESSAGE_MAP} "
            "WHERE message_id = ANY(:ids) AND born_in = 'stream'"
        )
        for message_id, stream_id in conn.execute(query, {"ids": list(ids)}):
            ids[str(message_id)] = str(stream_id)
    return ids
