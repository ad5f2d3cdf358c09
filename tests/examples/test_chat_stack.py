"""The chat page's stack (examples/chat_app/stack.py) as the demo, the browser tests and the
latency benchmark start it: the emulator, the app, and the real relay, worker and inbound
processes on a scratch database. A message goes both ways through it, and everything it
started is gone after it; the demo command prints the pages and stops on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import sys
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from examples.chat_app.seed import OLD_MESSAGES
from examples.chat_app.stack import Stack, running_stack
from stream_outbox.app_hooks.lookup import channel_for_conversation
from stream_outbox.app_hooks.reference import Message
from tests.support import database
from tests.support.processes import start, stop, wait_for, wait_for_line
from tests.support.settings import REDIS_URL, ROOT, SERVER_URL, clean_environ
from tests.support.user_client import UserClient

pytestmark = pytest.mark.slow


def _channel_id(stack: Stack, conversation: uuid.UUID) -> str:
    with stack.engine.connect() as conn:
        found = channel_for_conversation(conn, str(conversation))
    assert found is not None and found.synced
    return found.channel_id


def _texts_in_stream(stack: Stack, cid: str) -> list[str]:
    held = stack.emulator.state()["messages"].get(cid, [])
    return [m["text"] for m in held]


def test_the_stack_serves_the_page_and_carries_messages_both_ways(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<div id=root></div>")
    http = requests.Session()
    http.trust_env = False
    with running_stack(frontend_dist=tmp_path) as stack:
        cast = stack.cast
        name = stack.engine.url.database
        # The pages to open, one per user and conversation
        assert stack.urls["guest"] == (
            f"{stack.app_url}/?user={cast.guest}&conversation={cast.conversation}"
        )
        assert http.get(stack.urls["organizer, legacy"]).text == "<div id=root></div>"
        token = http.get(
            f"{stack.app_url}/chat/token", headers={"X-Demo-User": str(cast.organizer)}
        ).json()
        assert token["base_url"] == stack.emulator.base_url
        # The legacy conversation's history is in the database only
        old = http.get(
            f"{stack.app_url}/chat/conversations/{cast.legacy}/messages",
            headers={"X-Demo-User": str(cast.guest)},
        )
        assert [m["content"] for m in old.json()] == list(OLD_MESSAGES)
        assert f"messaging:legacy_{cast.legacy}" not in stack.emulator.state()["channels"]
        # A message posted through the legacy endpoint reaches Stream (relay, worker)
        channel_id = _channel_id(stack, cast.conversation)
        cid = f"messaging:{channel_id}"
        posted = http.post(
            f"{stack.app_url}/chat/conversations/{cast.conversation}/messages",
            json={"content": "Posted the old way"},
            headers={"X-Demo-User": str(cast.guest)},
        )
        assert posted.status_code == 200
        wait_for(
            lambda: _texts_in_stream(stack, cid) == ["Posted the old way"],
            "the legacy post in Stream",
        )
        # and one a user writes in Stream, with the app's token, reaches the app's database
        # (webhook, inbound)
        user = UserClient(
            token["base_url"], token["api_key"], token["user_id"], token["token"], http
        )
        user.send_message(cid, {"text": "Written in Stream"})

        def in_database() -> list[str]:
            with stack.engine.connect() as conn:
                query = select(Message.content).where(Message.conversation_id == cast.conversation)
                return list(conn.scalars(query.order_by(Message.created_at)))

        wait_for(
            lambda: in_database() == ["Posted the old way", "Written in Stream"],
            "the Stream message in the app's database",
        )
        processes = list(stack.processes.values())
    # Everything it started is stopped, and its scratch database dropped
    assert all(p.poll() is not None for p in processes)
    with pytest.raises(requests.ConnectionError):
        http.get(f"{stack.app_url}/health", timeout=2)
    assert database.databases_named(str(name)) == []


def test_the_demo_command_prints_the_pages_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    env = clean_environ(DATABASE_URL=SERVER_URL, REDIS_URL=REDIS_URL, PYTHONUNBUFFERED="1")
    with log.open("w") as output:
        command = [sys.executable, "-m", "examples.chat_app", "--port", "0"]
        demo = start(command, env=env, cwd=ROOT, output=output)
        try:
            wait_for_line(log, "Ctrl-C stops it all.", demo, timeout=90)
            printed = log.read_text()
            pages = re.findall(r"(?:Olga Organizer|Gus Guest) +(http://\S+)", printed)
            assert len(pages) == 4 and len(set(pages)) == 4
            app_url = pages[0].split("/?")[0]
            with requests.Session() as http:
                http.trust_env = False
                assert http.get(f"{app_url}/health", timeout=5).json() == {"status": "ok"}
            # When Ctrl-C
            os.killpg(demo.pid, signal.SIGINT)
            assert demo.wait(60) == 0
        finally:
            stop(demo, check=False)
    assert log.read_text().rstrip().endswith("stopping...")
