"""An edit made on both sides of a message born in the app, against real PostgreSQL, Redis
and the emulator over HTTP: the later edit wins in the app's table and in Stream, whichever
side made it and in whatever order its webhook arrives."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests
from sqlalchemy.orm import Session

from stream_outbox.app_hooks.reference import REFERENCE_BINDING, Message
from stream_outbox.worker.inbound.apply import apply_event
from stream_outbox.worker.settings import Settings
from tests.support.pipeline import Pipeline, drift
from tests.support.processes import wait_for
from tests.support.story import invite
from tests.support.stream_events import event_of
from tests.support.user_client import UserClient


@pytest.fixture()
def settings(settings: Settings) -> Settings:
    """The pipeline's settings with room for a call slowed on purpose (1.5 s)."""
    return settings.model_copy(update={"stream_timeout": timedelta(seconds=10)})


def _held(pipeline: Pipeline, cid: str, stream_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        m for m in pipeline.emu.state()["messages"][cid] if m["id"] == stream_id
    )
    return found


def _texts(
    pipeline: Pipeline, session_factory: Callable[[], Session], cid: str, app_id: uuid.UUID
) -> tuple[str, str]:
    """The message's text in the app's table and in Stream."""
    with session_factory() as session:
        message = session.get(Message, app_id)
        assert message is not None
        in_app = message.content
    return in_app, _held(pipeline, cid, f"msg-{app_id}")["text"]


def _app_message(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> tuple[str, uuid.UUID, UserClient]:
    """A message the old client wrote, mirrored into Stream: its channel, its id, and its
    author on the new client (a user token)."""
    with session_factory() as session, session.begin():
        made = invite(session)
        message = Message(
            conversation_id=made["conversation"].id, sender_id=made["guest"].id, content="v0"
        )
        session.add(message)
    pipeline.drain()
    author = str(made["guest"].id)
    token = pipeline.emu.client().create_token(author)
    client = UserClient(
        pipeline.emu.base_url, pipeline.emu.api_key, author, token, requests.Session()
    )
    return f"messaging:invitation_{made['invitation'].id}", message.id, client


def _edit_in_app(session_factory: Callable[[], Session], app_id: uuid.UUID, text: str) -> None:
    with session_factory() as session, session.begin():
        message = session.get(Message, app_id)
        assert message is not None
        message.content = text


def test_an_edit_on_both_sides_of_a_message_born_in_the_app_the_later_wins_on_both(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    cid, app_id, client = _app_message(pipeline, session_factory)
    stream_id = f"msg-{app_id}"
    # Given a client's edit in Stream whose webhook is late
    client.update_message({"id": stream_id, "text": "the client's, earlier"})
    late = event_of("message.updated", cid, _held(pipeline, cid, stream_id), client=True)
    # When the app edits the message after it, and the worker sends that edit
    _edit_in_app(session_factory, app_id, "the app's, later")
    pipeline.drain()
    # and the client's webhook arrives only then
    outcome = apply_event(pipeline.engine, REFERENCE_BINDING, late)
    # Then the app's edit, the later, holds on both sides
    assert outcome == "edit ignored: a later edit was applied"
    assert _texts(pipeline, session_factory, cid, app_id) == ("the app's, later",) * 2
    # When the client edits again, after the app
    client.update_message({"id": stream_id, "text": "the client's, latest"})
    later = event_of("message.updated", cid, _held(pipeline, cid, stream_id), client=True)
    assert apply_event(pipeline.engine, REFERENCE_BINDING, later) == "text set (born in the app)"
    # Then that edit holds on both sides, and nothing goes back to Stream
    assert _texts(pipeline, session_factory, cid, app_id) == ("the client's, latest",) * 2
    pipeline.emu.reset_request_counts()
    pipeline.drain()
    assert pipeline.emu.request_counts()["total"] == 0
    assert drift(pipeline) == []


def test_a_client_edit_applied_while_the_apps_earlier_edit_is_on_its_way_wins_on_both(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    cid, app_id, client = _app_message(pipeline, session_factory)
    stream_id = f"msg-{app_id}"
    # Given the app's edit on its way to Stream, slowly (the worker has read its text and
    # its call waits at Stream)
    pipeline.emu.set_latency(1500, "UpdateMessagePartial")
    _edit_in_app(session_factory, app_id, "the app's, earlier")
    draining = threading.Thread(target=pipeline.drain)
    draining.start()

    def on_its_way() -> bool:
        arrived = pipeline.emu.request_counts()["arrived"]
        return bool(arrived.get("UpdateMessagePartial"))

    wait_for(on_its_way, "the app's edit at Stream", timeout=20)
    # When a client edits the message after it, its webhook applied at once (before the
    # app's edit reaches Stream, and so before the later one there)
    client.update_message({"id": stream_id, "text": "the client's, later"})
    later = event_of("message.updated", cid, _held(pipeline, cid, stream_id), client=True)
    assert apply_event(pipeline.engine, REFERENCE_BINDING, later) == "text set (born in the app)"
    pipeline.emu.clear_faults()
    draining.join(timeout=60)
    pipeline.drain()
    # Then the worker, finding the text changed while its edit was on its way, sent the
    # database's again: the client's edit, the later, holds on both sides
    assert _texts(pipeline, session_factory, cid, app_id) == ("the client's, later",) * 2
    assert pipeline.counts()["UpdateMessagePartial"] == 2
