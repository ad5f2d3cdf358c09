"""The plain ``stream-chat`` JS client in node (``examples/frontend/scripts/watch-channel.mjs``)
against the chat page's stack: a token from the app's ``/chat/token``, a WebSocket to the
emulator, the conversation's channel watched, and ``message.new`` received live for a
message the app wrote through its own ORM session (outbox, relay, worker, Stream)."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.chat_app.page import FRONTEND
from examples.chat_app.stack import Stack, running_stack
from stream_outbox.app_hooks.reference import Message
from tests.support.chat_page import captured, channel_cid, missing_build
from tests.support.processes import start, stop, wait_for, wait_for_line

pytestmark = pytest.mark.slow

SCRIPT = FRONTEND / "scripts" / "watch-channel.mjs"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    problem = missing_build()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    if shutil.which("node") is None:
        pytest.fail("node is missing: install Node.js 20 (apt-get install nodejs)", pytrace=False)
    with running_stack(frontend_dist=FRONTEND / "dist") as running:
        yield running


def _events(log: Path) -> list[dict[str, object]]:
    lines = log.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_the_js_client_receives_a_message_the_app_wrote_through_its_session(
    stack: Stack, tmp_path: Path
) -> None:
    cast = stack.cast
    cid = channel_cid(stack, cast.conversation)
    assert cid is not None
    log = tmp_path / "node.log"
    with log.open("w") as output:
        command = [
            "node",
            str(SCRIPT),
            stack.app_url,
            str(cast.guest),
            str(cast.conversation),
        ]
        node = start(command, cwd=FRONTEND, output=output)
        try:
            # Given the guest's node client watching the conversation's channel
            wait_for_line(log, '"type":"watching"', node, timeout=30)
            watching = _events(log)[0]
            assert watching["cid"] == cid
            assert isinstance(watching["connection_id"], str) and watching["connection_id"]
            # When the app writes a message through its ORM session
            sessions = captured(stack.engine)
            with sessions() as session, session.begin():
                message = Message(
                    conversation_id=cast.conversation,
                    sender_id=cast.organizer,
                    content="Written by the app's session",
                )
                session.add(message)
            # Then the client receives message.new for it, and exits once it has
            wait_for(lambda: node.poll() is not None, "the node client's message.new", process=None)
            assert node.returncode == 0, log.read_text()
        finally:
            stop(node, check=False)
    received = _events(log)[1:]
    assert [(e["type"], e["cid"], e["text"]) for e in received] == [
        ("message.new", cid, "Written by the app's session")
    ]
    assert isinstance(received[0]["id"], str) and str(message.id) in str(received[0]["id"])


def test_the_js_client_is_refused_a_channel_of_others(stack: Stack, tmp_path: Path) -> None:
    # A user who is no participant gets no channel from the app: the script says why
    stranger = uuid.uuid4()
    done = subprocess.run(
        ["node", str(SCRIPT), stack.app_url, str(stranger), str(stack.cast.conversation)],
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "GET /chat/token: HTTP 401" in done.stderr
