"""Messages: mirror one database message into Stream (sent, edited or deleted).

Live messages only; older ones arrive by the history copy (through SendMessage) or
the Stream import (import files). The id is derived
from the database id, so a repeat finds the message there and sets its text.

A message born in Stream (a client sent it; the inbound side wrote its row) keeps
Stream's id, recorded in the message map: its row is never sent again, and its later
edits, restores and deletions in the database go to that id (:func:`_born_in_stream`).

After a history export (:mod:`~stream_outbox.worker.store.cutover`), messages created at
or before its watermark belong to the import files: none is sent before the import is complete, and
their edits and deletions wait for it too (an import applied later would undo them).
"""

from __future__ import annotations

from typing import Any

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import DesiredMessage, stream_message_id
from stream_outbox.worker.errors import PermanentStreamError, RetryableError
from stream_outbox.worker.runtime import Runtime
from stream_outbox.worker.store import message_map
from stream_outbox.worker.store.channel_map import ChannelRef
from stream_outbox.worker.store.cutover import Cutover, current_cutover, wait_for_import
from stream_outbox.worker.store.message_map import MapEntry
from stream_outbox.worker.stream.answers import is_not_found
from stream_outbox.worker.sync.bodies import SYSTEM_USER, SYSTEM_USER_ID, author_of, message_body
from stream_outbox.worker.sync.conversations import reconcile_conversation, waits_for_import
from stream_outbox.worker.sync.result import Result
from stream_outbox.worker.sync.users import ensure_users

__all__ = ["EditedMeanwhile", "mirror_message"]


class EditedMeanwhile(RetryableError):
    """A client's edit of the message was applied to the database while the app's edit
    was on its way to Stream: the job goes again, with the database's text."""


def mirror_message(rt: Runtime, message_id: str, payload: dict[str, Any] | None = None) -> Result:
    """Make Stream hold a message of the database as it is now, under its deterministic id.

    A new message is sent; one Stream holds already gets its current text (an edit); one
    the database no longer holds is deleted in Stream. Under the conversation's lock (the
    payload names the conversation of a message gone): the channel is never reconciled
    or deleted by another job between this job's read of the database and its call.
    """
    if not rt.settings.mirror_messages:
        return Result("mirroring off")
    with rt.engine.connect() as conn:
        message = reads.desired_messages(rt.binding, conn, [message_id]).get(message_id)
    cutover = current_cutover(rt.engine)
    if _import_holds(cutover, message) and _import_holds(
        cutover := current_cutover(rt.engine, fresh=True), message
    ):
        return _wait_for_import(rt, message_id, payload)
    conversation_id = message.conversation_id if message else (payload or {}).get("conversation_id")
    if conversation_id is None:  # gone, and its row does not say where it was
        return _unmirror(rt, message_id, None)
    pending = cutover if cutover is not None and cutover.pending else None
    with rt.locks.hold("conversation", [str(conversation_id)]):
        return _mirror_locked(rt, message_id, str(conversation_id), payload, pending)


def _import_holds(cutover: Cutover | None, message: DesiredMessage | None) -> bool:
    """Whether a pending import holds the message (created at or before its watermark;
    one gone may be in it too): its edits and deletions wait, or the import undoes them."""
    if cutover is None or not cutover.pending:
        return False
    return message is None or cutover.covers(message.created_at)


def _wait_for_import(rt: Runtime, message_id: str, payload: dict[str, Any] | None) -> Result:
    """Settle this row with a new one due later (:func:`wait_for_import`)."""
    after = wait_for_import(rt.engine, "message", message_id, payload)
    return Result(f"waits for the Stream import (looked at again in {after.seconds} s)")


def _unmirror(rt: Runtime, message_id: str, ref: ChannelRef | None) -> Result:
    """Delete a message the database no longer holds (its id in ``ref``'s generation, or
    the id Stream gave it where it was born there)."""
    with rt.engine.connect() as conn:
        entry = message_map.entry_for(conn, message_id)
    if entry is None or not entry.born_in_stream:
        rt.gateway.delete_message(stream_message_id(message_id, ref.generation if ref else 0))
        return Result("message gone: deleted in Stream")
    if entry.deleted_at is not None:  # deleted in Stream first (the inbound side wrote it)
        return Result("message gone: deleted in Stream already")
    rt.gateway.delete_message(entry.stream_id)
    with rt.engine.begin() as conn:
        message_map.mark_deleted(conn, message_id)
    return Result("message gone: deleted in Stream (born there)")


def _born_in_stream(
    rt: Runtime, entry: MapEntry | None, message: DesiredMessage, payload: dict[str, Any]
) -> Result | None:
    """A live message born in Stream (``entry``): never sent again; an edit in the
    database sets its text under Stream's id (and is the latest edit, either side), a soft
    delete undone undeletes it there. ``None`` for a message born in the app."""
    if entry is None or not entry.born_in_stream:
        return None
    author = message.sender_id or SYSTEM_USER_ID
    if payload.get("restore"):
        if not rt.gateway.restore_message(entry.stream_id, message.text, author):
            return Result("born in Stream, gone from it: not sent again")
        with rt.engine.begin() as conn:
            message_map.undelete(conn, entry.message_id)
        return Result("undeleted (born in Stream)")
    if entry.deleted_at is not None:
        return Result("deleted in Stream: its edit is not sent (a deletion wins)")
    if not payload.get("edit"):
        return Result("born in Stream: not sent again")
    _set_text(rt, entry.message_id, entry.stream_id, message.text, author)
    return Result("edited (born in Stream)")


def _mirror_locked(
    rt: Runtime,
    message_id: str,
    conversation_id: str,
    payload: dict[str, Any] | None,
    pending: Cutover | None,
) -> Result:
    with rt.engine.connect() as conn:
        message = reads.desired_messages(rt.binding, conn, [message_id]).get(message_id)
        if message is None:
            return _unmirror(rt, message_id, rt.repo.channels.channel_for(conversation_id, conn))
        ref = rt.repo.channels.channel_for(message.conversation_id, conn)
        entry = message_map.entry_for(conn, message_id)
    born = _born_in_stream(rt, entry, message, payload or {})
    if born is not None:
        return born
    if pending is not None and waits_for_import(rt, ref):
        return _wait_for_import(rt, message_id, payload)  # as its conversation does
    if ref is None or ref.deleted:  # no channel yet, or Stream deleted it (and it is back?)
        reconcile_conversation(rt, message.conversation_id, {}, need_channel=True)
        ref = rt.repo.channels.channel_for(message.conversation_id)
        if ref is None or ref.deleted:
            return Result("conversation gone")
    if ref.copying and _left_to_copy(rt, message):
        return Result("left to the channel's history copy (its messages are sent again)")
    present, author = _author(rt, message)
    stream_id = message.stream_id(ref.generation)
    done = _in_place(rt, payload or {}, message_id, stream_id, message.text, author)
    if done is not None:
        return done
    # A history message the copy left to its own row (Stream refused it) goes silent too
    silent = bool((payload or {}).get("history"))
    body = message_body(message, silent=silent, present=present, generation=ref.generation)
    try:
        sent = rt.gateway.send_message(ref.channel_type, ref.channel_id, body, author)
    except PermanentStreamError as exc:
        if not is_not_found(exc):  # Stream's DoesNotExist: no such channel
            raise
        if pending is not None:
            # The import brings this channel: created now, its members would be Stream's
            # already, and the import would not set their read state (a member's
            # last_read is not upserted). The message goes once the import is complete.
            return _wait_for_import(rt, message_id, payload)
        # The map names a channel Stream does not hold: its creation failed, or is still
        # being retried by the conversation's job. Bring it in step, then send again.
        reconcile_conversation(rt, message.conversation_id, {}, need_channel=True)
        with rt.engine.connect() as conn:
            if not reads.desired_messages(rt.binding, conn, [message_id]):
                return Result("message gone")
        sent = rt.gateway.send_message(ref.channel_type, ref.channel_id, body, author)
    if sent:
        return Result("sent")
    # Stream holds it already: a repeat, or an edit in the database. Level-triggered,
    # the text is set either way (the id, channel and author never change).
    _set_text(rt, message_id, stream_id, message.text, author)
    return Result("already there, text set")


def _author(rt: Runtime, message: DesiredMessage) -> tuple[set[str], str]:
    """The message's sender made present in Stream (those present), and its author there:
    the system user where it has no sender, or one Stream cannot hold (deleted)."""
    present = ensure_users(rt, [message.sender_id]) if message.sender_id else set()
    author = author_of(message, present)
    if author == SYSTEM_USER_ID:
        rt.gateway.upsert_users([SYSTEM_USER])
    return present, author


def _left_to_copy(rt: Runtime, message: DesiredMessage) -> bool:
    """Whether the history copy of a reopened channel has yet to reach this message: it
    sends it then, in order and with its text as it is then. One it has passed (an edit,
    or a message dated before the copy's cursor) goes now."""
    if message.created_at is None:  # the copy refuses such a history: nothing to wait for
        return False
    return not rt.repo.channels.copied_past(message.conversation_id, message.created_at)


def _in_place(
    rt: Runtime, payload: dict[str, Any], message_id: str, stream_id: str, text: str, author: str
) -> Result | None:
    """An edit's text set, or a restored message undeleted, where Stream holds it (the
    fewest calls for its rows); ``None`` when it is to be sent."""
    if payload.get("edit") and _edited(rt, message_id, stream_id, text, author):
        return Result("edited")
    if payload.get("restore") and rt.gateway.restore_message(stream_id, text, author):
        return Result("undeleted")
    return None


def _edited(rt: Runtime, message_id: str, stream_id: str, text: str, author: str) -> bool:
    """Set the text of a message Stream holds, in one call (an edit's rows); ``False`` when
    Stream does not hold it (its send failed, or waits in another job): it is sent."""
    try:
        _set_text(rt, message_id, stream_id, text, author)
    except PermanentStreamError as exc:
        if not is_not_found(exc):
            raise
        return False
    return True


def _set_text(rt: Runtime, message_id: str, stream_id: str, text: str, author: str) -> None:
    """Set the text of Stream's message ``stream_id`` (the app's ``message_id``) and record
    the edit's time, Stream's, as the message's latest (either side): a client's edit made
    before it and delivered after it loses (the later edit wins).

    Recorded under the message's lock, as the inbound side applies a client's edit: one
    applied while this call was on its way (newer than the app's edit, so it wins) has
    the database's text differ from the one sent, and :class:`EditedMeanwhile` has the
    job go again with it."""
    stamped = rt.gateway.update_message_text(stream_id, text, author)
    with rt.engine.begin() as conn:
        message_map.hold(conn, stream_id)
        message_map.record_edit(conn, message_id, stream_id, stamped)
        now = reads.desired_messages(rt.binding, conn, [message_id]).get(message_id)
    if now is not None and now.text != text:
        raise EditedMeanwhile(f"message {message_id}: its text changed while its edit was sent")
