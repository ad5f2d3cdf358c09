"""One target's desired state next to what Stream holds (for ``admin show`` and the dashboard).

Stream is asked through the operators' gateway: its calls take slots of the workers'
shared budget and wait out 429s.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import Binding
from stream_outbox.worker.errors import ConfigurationError, StreamError
from stream_outbox.worker.runtime import operator_gateway
from stream_outbox.worker.settings import Settings
from stream_outbox.worker.store import message_map
from stream_outbox.worker.store.channel_map import ChannelMap, ChannelRef
from stream_outbox.worker.store.cutover import read_cutover
from stream_outbox.worker.stream.protocol import StreamReader

__all__ = ["describe"]


def describe(
    engine: Engine,
    settings: Settings,
    binding: Binding,
    *,
    kind: str,
    target_id: str,
    gateway: StreamReader | None = None,
) -> dict[str, Any]:
    """``{"database": ..., "stream": ...}`` for a user, conversation or message (read-only);
    Stream asked through ``gateway``, else the operators' gateway the settings make."""
    database, channel = _desired(engine, binding, kind=kind, target_id=target_id)
    try:
        stream = gateway if gateway is not None else operator_gateway(settings)
    except ConfigurationError as exc:
        return {"database": database, "stream": f"not asked ({exc})"}
    try:
        held = _held(stream, kind=kind, target_id=target_id, channel=channel)
        return {"database": database, "stream": held}
    except StreamError as exc:
        return {"database": database, "stream": f"unavailable: {exc.describe()}"}


def _desired(
    engine: Engine, binding: Binding, *, kind: str, target_id: str
) -> tuple[Any, tuple[str, str] | None]:
    ref = ChannelMap(engine).channel_for(target_id) if kind == "conversation" else None
    channel = (ref.channel_type, ref.channel_id) if ref else None
    with engine.connect() as conn:
        if kind == "user":
            user = reads.desired_users(binding, conn, [target_id]).get(target_id)
            return (user.as_stream() if user else "absent (deleted)"), None
        if kind == "conversation":
            wanted = reads.desired_channels(binding, conn, [target_id]).get(target_id)
            if wanted is None:
                return "absent (deleted)", channel
            view: dict[str, Any] = {
                "channel": f"{channel[0]}:{channel[1]}" if channel else "not assigned yet",
                "members": list(wanted.members),
                "data": wanted.data,
            }
            if ref is not None:
                view["in_stream"] = _in_stream(engine, ref)
            if ref is not None and (ref.generation or ref.deleted):
                # Created again after a deletion: its messages' ids are msg{generation}-{id}
                # (deleted: the next reconcile makes the next generation)
                view["generation"] = _generation(ref)
                view["history_copy"] = (
                    "due (the channel is created again at the next reconcile)"
                    if ref.deleted
                    else "running"
                    if ref.copying
                    else "done"
                )
            return view, channel
        message = reads.desired_messages(binding, conn, [target_id]).get(target_id)
        if message is None:
            return "absent (deleted)", None
        mapped = message_map.stream_ids(conn, [target_id])  # born in Stream: Stream's id
    home = ChannelMap(engine).channel_for(message.conversation_id)
    stream_id = message_map.stream_id_of(target_id, _generation(home) if home else 0, mapped)
    return {"id": stream_id, "conversation": message.conversation_id}, None


def _in_stream(engine: Engine, ref: ChannelRef) -> str:
    """Whether Stream holds the channel, and if not, what brings it."""
    if ref.in_stream and not ref.deleted:
        return "yes"
    with engine.connect() as conn:
        cutover = read_cutover(conn)
    if cutover is not None and not cutover.imported and cutover.carries(ref.exported_in):
        return "no: the pending Stream import brings it"
    return "no: created at the conversation's next reconcile"


def _generation(ref: ChannelRef) -> int:
    """The generation a live conversation's channel has, or gets at its next reconcile."""
    return ref.generation + 1 if ref.deleted else ref.generation


def _held(
    gateway: StreamReader, *, kind: str, target_id: str, channel: tuple[str, str] | None
) -> Any:
    if kind == "user":
        return gateway.query_users([target_id]).get(target_id) or "absent"
    if kind == "conversation":
        if channel is None:
            return "no channel assigned"
        cid = f"{channel[0]}:{channel[1]}"
        remote = gateway.channel_states([cid]).get(cid)
        if remote is None:
            return "absent"
        return {"members": sorted(remote.members), "data": remote.data}
    return "not shown (messages are checked by verify)"
