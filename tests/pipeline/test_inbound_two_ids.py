"""A message born in Stream, written into the app by the inbound applier, against real
PostgreSQL, Redis and the emulator over HTTP: the worker never sends it again (0 calls in
the emulator's request log), the app's later edit and deletion reach Stream's message
under Stream's id, its echo writes nothing, and verify expects it under that id."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from stream_chat import StreamChat

from stream_outbox.app_hooks.capture import write_changes
from stream_outbox.app_hooks.changes import Change, Target
from stream_outbox.app_hooks.outbox import message_map, outbox
from stream_outbox.app_hooks.reference import REFERENCE_BINDING, Message
from stream_outbox.worker.inbound.apply import apply_event
from stream_outbox.worker.stream.gateway import StreamGateway
from stream_outbox.worker.verify.paged import verify
from tests.support.pipeline import Pipeline, drift
from tests.support.settings import API_KEY, API_SECRET
from tests.support.story import invite
from tests.support.stream_events import event_of


def _stream_message(pipeline: Pipeline, cid: str, message_id: str) -> dict[str, Any]:
    held: dict[str, Any] = next(
        m for m in pipeline.emu.state()["messages"][cid] if m["id"] == message_id
    )
    return held


def _born_in_stream(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> tuple[dict[str, Any], str, str, str]:
    """A conversation mirrored into Stream, and a message a client sent in its channel,
    applied to the app: (the story, cid, Stream's id, the app's id)."""
    with session_factory() as session, session.begin():
        made = invite(session)
        session.add(
            Message(
                conversation_id=made["conversation"].id, sender_id=made["guest"].id, content="a"
            )
        )
    pipeline.drain()
    cid = f"messaging:invitation_{made['invitation'].id}"
    stream_id = f"client-{uuid.uuid4()}"
    client = StreamChat(API_KEY, API_SECRET, base_url=pipeline.emu.base_url)
    guest = str(made["guest"].id)
    client.channel(*cid.split(":")).send_message({"id": stream_id, "text": "from Stream"}, guest)
    new = event_of("message.new", cid, _stream_message(pipeline, cid, stream_id), client=True)
    assert apply_event(pipeline.engine, REFERENCE_BINDING, new).startswith("message inserted")
    with pipeline.engine.connect() as conn:
        app_id = conn.scalar(
            select(message_map.c.message_id).where(message_map.c.stream_id == stream_id)
        )
    return made, cid, stream_id, str(app_id)


def test_a_message_applied_from_stream_costs_the_worker_no_stream_call(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    made, cid, _, app_id = _born_in_stream(pipeline, session_factory)
    # The applier wrote on its own connection: the listeners captured nothing
    assert [r for r in pipeline.rows() if r["status"] != "done"] == []
    pipeline.emu.reset_request_counts()
    # Even a capture row of its insert (as a resync or a replay would write) sends nothing
    with pipeline.engine.begin() as conn:
        payload = {"conversation_id": str(made["conversation"].id)}
        write_changes(conn, [Change(Target("message", app_id), "insert", payload)])
    pipeline.drain()
    assert pipeline.emu.request_counts()["total"] == 0
    assert [r["id"] for r in pipeline.emu.state()["messages"][cid]].count(f"msg-{app_id}") == 0
    with pipeline.engine.connect() as conn:
        [row] = conn.execute(select(outbox.c.status).where(outbox.c.target_id == app_id)).all()
    assert row.status == "done"


def test_the_apps_edit_and_deletion_reach_streams_message_under_its_id(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    _, cid, stream_id, app_id = _born_in_stream(pipeline, session_factory)
    pipeline.emu.reset_request_counts()
    # When the old client edits the message born in Stream
    with session_factory() as session, session.begin():
        message = session.get(Message, uuid.UUID(app_id))
        assert message is not None
        message.content = "edited in the app"
    pipeline.drain()
    # Then Stream's message, under Stream's id, has the new text; nothing was sent
    held = _stream_message(pipeline, cid, stream_id)
    assert held["text"] == "edited in the app"
    counts = pipeline.counts()
    assert counts.get("SendMessage", 0) == 0 and counts["UpdateMessagePartial"] == 1
    assert f"msg-{app_id}" not in {m["id"] for m in pipeline.emu.state()["messages"][cid]}
    # And the edit's webhook coming back writes nothing (the text is in step)
    echo = event_of("message.updated", cid, held, client=None)
    outcome = apply_event(pipeline.engine, REFERENCE_BINDING, echo)
    assert outcome in ("text in step already", "edit ignored: a later edit was applied")
    # When the old client deletes it, Stream's message is deleted
    with session_factory() as session, session.begin():
        gone = session.get(Message, uuid.UUID(app_id))
        session.delete(gone)
    pipeline.drain()
    assert _stream_message(pipeline, cid, stream_id)["type"] == "deleted"
    with pipeline.engine.connect() as conn:
        deleted = conn.scalar(
            select(message_map.c.deleted_at).where(message_map.c.message_id == app_id)
        )
    assert deleted is not None
    # and its deletion's webhook writes nothing either
    gone_event = event_of("message.deleted", cid, _stream_message(pipeline, cid, stream_id), None)
    assert apply_event(pipeline.engine, REFERENCE_BINDING, gone_event) == "deleted already"
    assert {r["status"] for r in pipeline.rows()} == {"done"}


def test_verify_expects_messages_born_in_stream_under_streams_ids(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    made, *_ = _born_in_stream(pipeline, session_factory)
    # One more written by the old client after it, mirrored
    with session_factory() as session, session.begin():
        session.add(
            Message(
                conversation_id=made["conversation"].id, sender_id=made["guest"].id, content="b"
            )
        )
    pipeline.drain()
    assert drift(pipeline) == []
    gateway = StreamGateway(API_KEY, API_SECRET, base_url=pipeline.emu.base_url)
    found = verify(pipeline.engine, REFERENCE_BINDING, gateway, history=True)
    assert found.differences == [] and found.messages == 3


def test_the_history_copy_passes_a_message_born_in_stream(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    made, cid, stream_id, app_id = _born_in_stream(pipeline, session_factory)
    pipeline.emu.reset_request_counts()
    # A history copy of the conversation (as after its channel was made again)
    with pipeline.engine.begin() as conn:
        target = Target("conversation", str(made["conversation"].id))
        write_changes(conn, [Change(target, "history", {"history": True})])
    pipeline.drain()
    assert pipeline.counts().get("SendMessage", 0) == 1  # the app's own message only
    ids = [m["id"] for m in pipeline.emu.state()["messages"][cid]]
    assert ids.count(stream_id) == 1 and f"msg-{app_id}" not in ids


def test_an_edit_on_both_sides_the_later_wins_on_both(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    _, cid, stream_id, app_id = _born_in_stream(pipeline, session_factory)
    held = _stream_message(pipeline, cid, stream_id)
    # The app edits it; the worker sends the edit (its time recorded in the map)
    with session_factory() as session, session.begin():
        message = session.get(Message, uuid.UUID(app_id))
        assert message is not None
        message.content = "the app's edit"
    pipeline.drain()
    # A client's edit made before the app's, arriving after it: it loses on both sides
    earlier = event_of("message.updated", cid, held | {"text": "older client edit"}, True)
    earlier["message"]["updated_at"] = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    assert apply_event(pipeline.engine, REFERENCE_BINDING, earlier) == (
        "edit ignored: a later edit was applied"
    )
    # A client's edit made after it wins in the app (and Stream holds it already)
    later = event_of("message.updated", cid, held | {"text": "newer client edit"}, True)
    later["message"]["updated_at"] = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    assert apply_event(pipeline.engine, REFERENCE_BINDING, later) == "text set"
    with session_factory() as session:
        message = session.get(Message, uuid.UUID(app_id))
        assert message is not None and message.content == "newer client edit"
    # and sends nothing back to Stream
    pipeline.emu.reset_request_counts()
    pipeline.drain()
    assert pipeline.emu.request_counts()["total"] == 0
    assert [r for r in pipeline.rows() if r["status"] != "done"] == []
