"""Dual mode and the frontend's lookups: mirrored messages, channel lookup, token endpoint."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from stream_outbox.app_hooks.lookup import channel_for_conversation
from stream_outbox.app_hooks.reference import Message, User
from stream_outbox.worker import runtime
from tests.support.pipeline import Pipeline
from tests.support.settings import API_KEY, API_SECRET
from tests.support.story import invite


def test_messages_written_by_the_old_chat_reach_the_channel(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session, session.begin():
        made = invite(session)
        session.add(
            Message(
                conversation_id=made["conversation"].id, sender_id=made["guest"].id, content="hi"
            )
        )
        session.add(
            Message(conversation_id=made["conversation"].id, sender_id=None, content="joined")
        )
    pipeline.drain()
    cid = f"messaging:invitation_{made['invitation'].id}"
    messages = pipeline.emu.state()["messages"][cid]
    assert sorted(m["text"] for m in messages) == ["hi", "joined"]
    assert all(m["id"].startswith("msg-") for m in messages)
    system = next(m for m in messages if m["text"] == "joined")
    assert system["system"] is True and system["user_id"] == "stream-outbox-system"
    # a replay of the same rows sends nothing twice
    for row in pipeline.rows():
        if row["target_kind"] == "message":
            pipeline.actor.send("message", [row["target_id"]], [row["id"]], {})
    pipeline.drain()
    assert len(pipeline.emu.state()["messages"][cid]) == 2


def test_edits_and_deletions_by_the_old_chat_reach_the_channel(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given two mirrored messages
    with session_factory() as session, session.begin():
        made = invite(session)
        kept = Message(
            conversation_id=made["conversation"].id, sender_id=made["guest"].id, content="helo"
        )
        dropped = Message(
            conversation_id=made["conversation"].id, sender_id=made["guest"].id, content="oops"
        )
        session.add_all([kept, dropped])
    pipeline.drain()
    cid = f"messaging:invitation_{made['invitation'].id}"
    # When the old chat edits one and deletes the other
    with session_factory() as session, session.begin():
        edited = session.get(Message, kept.id)
        assert edited is not None
        edited.content = "hello"
        gone = session.get(Message, dropped.id)
        session.delete(gone)
    pipeline.drain()
    # Then Stream holds the new text, and the deleted message is deleted there too
    by_id = {m["id"]: m for m in pipeline.emu.state()["messages"][cid]}
    assert by_id[f"msg-{kept.id}"]["text"] == "hello"
    assert by_id[f"msg-{dropped.id}"]["type"] == "deleted"
    assert by_id[f"msg-{kept.id}"]["user_id"] == str(made["guest"].id)
    assert {row["status"] for row in pipeline.rows()} == {"done"}
    # And a replay of every message row changes nothing and fails nothing
    for row in pipeline.rows():
        if row["target_kind"] == "message":
            pipeline.actor.send("message", [row["target_id"]], [row["id"]], row["payload"])
    pipeline.drain()
    again = {m["id"]: m for m in pipeline.emu.state()["messages"][cid]}
    assert again[f"msg-{kept.id}"]["text"] == "hello"
    assert again[f"msg-{dropped.id}"]["type"] == "deleted"
    assert {row["status"] for row in pipeline.rows()} == {"done"}


@pytest.mark.parametrize("capture", ["session_factory", "trigger_sessions"])
def test_an_edit_costs_one_call_and_an_edit_stream_never_got_is_sent(
    pipeline: Pipeline, capture: str, request: pytest.FixtureRequest
) -> None:
    # In either capture mode (the ORM's listeners, or the database's triggers)
    session_factory: Callable[[], Session] = request.getfixturevalue(capture)
    # Given a mirrored message, and one never sent (its row lost to a restore, say)
    with session_factory() as session, session.begin():
        made = invite(session)
        sent = Message(conversation_id=made["conversation"].id, sender_id=None, content="helo")
        session.add(sent)
    pipeline.drain()
    with session_factory() as session, session.begin():
        unsent = Message(conversation_id=made["conversation"].id, sender_id=None, content="x")
        session.add(unsent)
    with pipeline.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM stream_outbox WHERE status = 'pending'")
    pipeline.emu.reset_request_counts()
    # When the old chat edits both
    with session_factory() as session, session.begin():
        for message_id, text in ((sent.id, "hello"), (unsent.id, "fixed")):
            edited = session.get(Message, message_id)
            assert edited is not None
            edited.content = text
    pipeline.drain()
    # Then the first is edited in one call, and the second, not in Stream, is sent
    cid = f"messaging:invitation_{made['invitation'].id}"
    by_id = {m["id"]: m["text"] for m in pipeline.emu.state()["messages"][cid]}
    assert by_id == {f"msg-{sent.id}": "hello", f"msg-{unsent.id}": "fixed"}
    counts = pipeline.counts()
    assert (counts.get("UpdateMessagePartial"), counts.get("SendMessage")) == (2, 1), counts
    assert {row["status"] for row in pipeline.rows()} == {"done"}


def test_mirroring_can_be_turned_off_after_the_cut_over(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    rt = runtime.current()
    rt.settings = rt.settings.model_copy(update={"mirror_messages": False})
    with session_factory() as session, session.begin():
        made = invite(session)
        session.add(Message(conversation_id=made["conversation"].id, sender_id=None, content="x"))
    pipeline.drain()
    assert pipeline.emu.state()["messages"] == {}
    assert {row["status"] for row in pipeline.rows()} == {"done"}


def test_channel_lookup_predicts_then_confirms(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session, session.begin():
        made = invite(session)
    conversation_id = str(made["conversation"].id)
    with pipeline.engine.connect() as conn:
        before = channel_for_conversation(conn, conversation_id)
    assert before is not None and not before.synced
    assert before.channel_id == f"invitation_{made['invitation'].id}"
    pipeline.drain()
    with pipeline.engine.connect() as conn:
        after = channel_for_conversation(conn, conversation_id)
        missing = channel_for_conversation(conn, str(uuid.uuid4()))
    assert after == dataclasses.replace(before, synced=True)
    assert missing is None


def test_token_endpoint_signs_a_user_token_locally(frontend: TestClient) -> None:
    answer: dict[str, Any] = frontend.get("/chat/token", headers={"x-user-id": "u-1"}).json()
    assert (answer["user_id"], answer["api_key"], answer["app_id"]) == ("u-1", API_KEY, "1460405")
    assert answer["base_url"] is None  # Stream itself
    claims = jwt.decode(answer["token"], API_SECRET, algorithms=["HS256"])
    assert claims["user_id"] == "u-1" and claims["exp"] - claims["iat"] == 3600


def test_channel_endpoint_answers_participants_only(
    frontend: TestClient, session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session, session.begin():
        made = invite(session)
        stranger = User(email="stranger@example.com")
        session.add(stranger)
    url = f"/chat/conversations/{made['conversation'].id}/channel"
    ok = frontend.get(url, headers={"x-user-id": str(made["guest"].id)})
    assert ok.status_code == 200
    assert ok.json()["cid"] == f"messaging:invitation_{made['invitation'].id}"
    assert ok.json()["synced"] is False
    assert frontend.get(url, headers={"x-user-id": str(stranger.id)}).status_code == 403
    unknown = f"/chat/conversations/{uuid.uuid4()}/channel"
    assert frontend.get(unknown, headers={"x-user-id": "u"}).status_code == 404
    garbage = "/chat/conversations/not-a-uuid/channel"
    assert frontend.get(garbage, headers={"x-user-id": "u"}).status_code == 404
