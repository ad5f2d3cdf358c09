"""Dual mode, both ways, through the Procfile's processes: in one conversation two users
write through the app's session (the old client) and two through user-token calls to
Stream (the new client); relay, worker and inbound run under honcho, Stream's webhooks
reach the inbound process. Every message ends in both places once, in the same order,
and edits, deletions and reads made on either side arrive on the other."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks.reference import (
    ConversationParticipant,
    Message,
)
from stream_outbox.emulator import Emulator
from tests.support.processes import (
    Run,
    free_port,
    script,
    serving,
    started_processes,
    stop,
    wait_for,
)
from tests.support.redis import REDIS_PREFIX, clear_redis, redis_db_url
from tests.support.settings import BIN, ROOT, clean_environ, product_env
from tests.support.story import group
from tests.support.user_client import UserClient

pytestmark = pytest.mark.slow

REDIS_DB = 13
ROUNDS = 5  # each round: one message from each of the four users


@pytest.fixture()
def inbound_port() -> int:
    return free_port()


@pytest.fixture()
def product(database_url: str, redis_url: str, emu: Emulator, inbound_port: int) -> dict[str, str]:
    """The product's settings, Stream's webhooks sent to the inbound process."""
    redis = redis_db_url(REDIS_DB)
    clear_redis(redis, REDIS_PREFIX)
    hook = f"http://127.0.0.1:{inbound_port}/stream/webhook"
    emu.client().update_app_settings(
        event_hooks=[{"hook_type": "webhook", "webhook_url": hook, "enabled": True}]
    )
    return product_env(
        database_url,
        redis,
        emu.base_url,
        prefix=REDIS_PREFIX,
        OUTBOX_WORKER_THREADS="4",
        OUTBOX_INBOUND_PORT=str(inbound_port),
    )


@pytest.fixture()
def env(product: dict[str, str]) -> dict[str, str]:
    return clean_environ(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONUNBUFFERED="1", **product
    )


@pytest.fixture()
def launch(env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    with started_processes(env, cwd=ROOT) as start:
        yield start


@pytest.fixture()
def honcho(
    launch: Callable[..., subprocess.Popen[str]],
) -> Callable[..., subprocess.Popen[str]]:
    """The Procfile under honcho: every process, or those named."""
    return lambda *names: launch(*script("honcho", "start", "-f", str(ROOT / "Procfile"), *names))


def _receiving(procs: subprocess.Popen[str], inbound_port: int) -> None:
    """Wait until the inbound process serves: Stream gives up on a webhook after a few
    seconds of retries, so a client writing before it is up would lose its messages."""
    serving(procs, f"http://127.0.0.1:{inbound_port}/healthz", timeout=60)


def _texts_in_db(engine: Engine, conversation_id: Any) -> list[str]:
    query = (
        select(Message.content)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.created_at, Message.id)
    )
    with engine.connect() as conn:
        return list(conn.scalars(query))


def _texts_in_stream(emu: Emulator, cid: str) -> list[str]:
    held = emu.state()["messages"].get(cid, [])
    live = [m for m in held if not m.get("deleted_at")]
    return [m["text"] for m in sorted(live, key=lambda m: (m["created_at"], m["id"]))]


def _sees(side: Callable[[], list[str]], expected: list[str]) -> bool:
    return side() == expected


def _last_read(engine: Engine, conversation_id: Any, user_id: Any) -> datetime | None:
    with engine.connect() as conn:
        return conn.scalar(
            select(ConversationParticipant.last_read_at).where(
                ConversationParticipant.conversation_id == conversation_id,
                ConversationParticipant.user_id == user_id,
            )
        )


def test_two_clients_on_two_sides_of_one_conversation_see_the_same_chat(
    emu: Emulator,
    clean_db: Engine,
    session_factory: sessionmaker[Session],
    honcho: Callable[[], subprocess.Popen[str]],
    product: dict[str, str],
    inbound_port: int,
    cli: Run,
) -> None:
    sessions = session_factory
    # Given a conversation of four, its channel in Stream
    with sessions() as session, session.begin():
        people, conversation = group(session, 4, "dual")
    procs = honcho()
    try:

        def four_members() -> str | None:
            channels = emu.state()["channels"].items()
            return next((c for c, ch in channels if len(ch["members"]) == 4), None)

        wait_for(four_members, "the conversation's channel in Stream", timeout=60, process=procs)
        cid = str(four_members())
        _receiving(procs, inbound_port)
        server = emu.client()
        http = requests.Session()
        new = [
            UserClient(emu.base_url, emu.api_key, str(p.id), server.create_token(str(p.id)), http)
            for p in people[2:]
        ]
        # When the old clients write through the app and the new ones in Stream, in turn,
        # each replying once the message before has reached both sides (Stream stamps a
        # message when it gets it: two sent within the mirror's lag of each other may be
        # in a different order on the two sides)
        expected: list[str] = []
        for n in range(ROUNDS):
            for k, person in enumerate(people):
                for side in (
                    partial(_texts_in_db, clean_db, conversation.id),
                    partial(_texts_in_stream, emu, cid),
                ):
                    wait_for(
                        partial(_sees, side, list(expected)),
                        f"{expected[-1:]} on both sides before user {k} writes",
                        timeout=30,
                        process=procs,
                    )
                text = f"round {n} from {k}"
                if k < 2:
                    with sessions() as session, session.begin():
                        session.add(
                            Message(
                                conversation_id=conversation.id, sender_id=person.id, content=text
                            )
                        )
                else:
                    new[k - 2].send_message(cid, {"text": text})
                expected.append(text)
        # Then every message is in both places once, in the same order
        wait_for(
            lambda: _texts_in_db(clean_db, conversation.id) == expected,
            "the new clients' messages in the app's database",
            timeout=60,
            process=procs,
        )
        wait_for(
            lambda: _texts_in_stream(emu, cid) == expected,
            "the old clients' messages in Stream",
            timeout=60,
            process=procs,
        )
        # When each side edits and deletes a message of its own, and reads
        with sessions() as session, session.begin():
            own = session.scalars(
                select(Message).where(Message.content.in_(["round 0 from 0", "round 1 from 1"]))
            ).all()
            by_text = {m.content: m for m in own}
            by_text["round 0 from 0"].content = "edited in the app"
            session.delete(by_text["round 1 from 1"])
        in_stream = {m["text"]: m["id"] for m in emu.state()["messages"][cid]}
        new[0].update_message({"id": in_stream["round 0 from 2"], "text": "edited in Stream"})
        new[1].delete_message(in_stream["round 1 from 3"])
        read_at = datetime.now(UTC)
        new[0].mark_read(cid)
        with sessions() as session, session.begin():
            participant = session.get_one(ConversationParticipant, (conversation.id, people[0].id))
            participant.last_read_at = read_at
        expected = [
            {"round 0 from 0": "edited in the app", "round 0 from 2": "edited in Stream"}.get(t, t)
            for t in expected
            if t not in ("round 1 from 1", "round 1 from 3")
        ]
        # Then both sides hold the same messages again, and each read is on the other side
        wait_for(
            lambda: _texts_in_db(clean_db, conversation.id) == expected,
            "Stream's edit and deletion in the app's database",
            timeout=60,
            process=procs,
        )
        wait_for(
            lambda: _texts_in_stream(emu, cid) == expected,
            "the app's edit and deletion in Stream",
            timeout=60,
            process=procs,
        )
        wait_for(
            lambda: _last_read(clean_db, conversation.id, people[2].id),
            "the new client's read in the app's database",
            timeout=30,
        )
        members = emu.state()["channels"][cid]["members"]
        assert str(people[0].id) in members
        wait_for(
            lambda: _member_read(emu, cid, str(people[0].id)),
            "the old client's read in Stream",
            timeout=30,
        )
        # And verify finds both sides the same, messages included
        checked = cli("admin", "verify", "--messages", **product)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        stop(procs)


def _member_read(emu: Emulator, cid: str, user_id: str) -> str | None:
    member = emu.state()["channels"][cid]["member_records"].get(user_id) or {}
    read: str | None = member.get("last_read")
    return read


def test_webhooks_lost_duplicated_and_reordered_still_bring_every_message_once(
    emu: Emulator,
    clean_db: Engine,
    session_factory: sessionmaker[Session],
    honcho: Callable[[], subprocess.Popen[str]],
    product: dict[str, str],
    inbound_port: int,
    cli: Run,
) -> None:
    # Given a conversation of two in Stream, both on the new client
    with session_factory() as session, session.begin():
        people, conversation = group(session, 2, "faulty")
    procs = honcho()
    try:
        wait_for(lambda: emu.state()["channels"], "the channel", timeout=60, process=procs)
        (cid,) = emu.state()["channels"]
        _receiving(procs, inbound_port)
        server = emu.client()
        writer = UserClient(
            emu.base_url,
            emu.api_key,
            str(people[0].id),
            server.create_token(str(people[0].id)),
            requests.Session(),
        )
        # When Stream's webhooks are duplicated, reordered, and some lost for good (the
        # receiver down past Stream's retries), while the new client writes
        emu.webhook_fault("duplicate", times=4, event_type="message.new")
        emu.webhook_fault("reorder", times=4, event_type="message.new")
        texts = [f"m{n:02d}" for n in range(12)]
        for text in texts[:8]:
            writer.send_message(cid, {"text": text})
        emu.wait_webhooks(timeout=30)
        emu.webhook_fault("drop", times=4, event_type="message.new")
        for text in texts[8:]:
            writer.send_message(cid, {"text": text})
        emu.wait_webhooks(timeout=30)
        # Then every delivered message is in the app's database once, the lost ones not yet
        wait_for(
            lambda: len(_texts_in_db(clean_db, conversation.id)) == 8,
            "the delivered messages in the app's database",
            timeout=30,
            process=procs,
        )
        assert _texts_in_db(clean_db, conversation.id) == texts[:8]
        # And once `inbound sync` has caught up from Stream's own state, every one, once,
        # in Stream's order
        done = cli("inbound", "sync", "--since", "1h", **product)
        assert done.returncode == 0, done.stderr
        wait_for(
            lambda: _texts_in_db(clean_db, conversation.id) == texts,
            "the lost messages caught up by inbound sync",
            timeout=30,
            process=procs,
        )
        assert cli("inbound", "sync", "--since", "1h", **product).returncode == 0
        assert _texts_in_db(clean_db, conversation.id) == texts
    finally:
        stop(procs)


def test_a_receiver_down_is_caught_up_by_inbound_sync_once_it_is_back(
    emu: Emulator,
    clean_db: Engine,
    session_factory: sessionmaker[Session],
    honcho: Callable[..., subprocess.Popen[str]],
    launch: Callable[..., subprocess.Popen[str]],
    product: dict[str, str],
    inbound_port: int,
    cli: Run,
) -> None:
    # Given the relay and worker running, the inbound receiver down, and a conversation
    with session_factory() as session, session.begin():
        people, conversation = group(session, 2, "down")
    procs = honcho("relay", "worker")
    try:
        wait_for(lambda: emu.state()["channels"], "the channel", timeout=60, process=procs)
        (cid,) = emu.state()["channels"]
        user = str(people[1].id)
        writer = UserClient(
            emu.base_url, emu.api_key, user, emu.client().create_token(user), requests.Session()
        )
        # When the new client writes while nothing receives Stream's webhooks (Stream
        # tries each, then gives up)
        texts = [f"while down {n}" for n in range(6)]
        for text in texts:
            writer.send_message(cid, {"text": text})
        emu.wait_webhooks(timeout=30)
        assert _texts_in_db(clean_db, conversation.id) == []
        # Then, the receiver back and `inbound sync` run, every message is in the app once
        inbound = launch(*script("stream-outbox", "inbound"))
        serving(inbound, f"http://127.0.0.1:{inbound_port}/healthz")
        done = cli("inbound", "sync", "--since", "1h", **product)
        assert done.returncode == 0, done.stderr
        wait_for(
            lambda: _texts_in_db(clean_db, conversation.id) == texts,
            "the messages written while the receiver was down",
            timeout=30,
            process=inbound,
        )
        # And what the client writes now comes by webhook again
        writer.send_message(cid, {"text": "back"})
        wait_for(
            lambda: _texts_in_db(clean_db, conversation.id) == [*texts, "back"],
            "a message written once the receiver is back",
            timeout=30,
            process=inbound,
        )
    finally:
        stop(procs)
