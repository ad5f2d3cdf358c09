"""Dual mode, both ways, through the Procfile's processes, whatever Stream's webhooks do.

In one conversation two users write through the app's session (the old client) and two
through user-token calls to Stream (the new client). The relay and the worker run under
one honcho, the inbound receiver under another (so that it can be down while the rest
runs); Stream's webhooks reach the inbound process, duplicated and reordered, every type
the inbound side applies, or not at all while it is down. Every message ends in both
places once, in the same order, and edits, deletions and reads made on either side
arrive on the other: by webhook, or by `inbound sync` for what Stream gave up on."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks.outbox import InboxStatus, inbox, message_map
from stream_outbox.app_hooks.reference import ConversationParticipant, Message, User
from stream_outbox.emulator import Emulator
from stream_outbox.emulator.webhooks.delivery import NETWORK_ERROR, attempts_allowed
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
OLD, NEW = (0, 1), (2, 3)  # the people on the app's session, and on the new client
APPLIED = ("message.new", "message.updated", "message.deleted", "message.read")
HOLD = 10.0  # how long a reordered webhook waits for the next one (it comes at once)


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


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


@dataclass
class _Chat:
    """The conversation of the four, seen from both sides, and what both should hold
    (``expected``: the live messages' texts, oldest first). Texts are unique."""

    emu: Emulator
    engine: Engine
    sessions: sessionmaker[Session]
    people: list[User]
    conversation_id: Any
    cid: str
    clients: dict[int, UserClient]
    expected: list[str] = field(default_factory=list)

    # -- the two sides ---------------------------------------------------------------------

    def in_db(self) -> list[str]:
        query = (
            select(Message.content)
            .where(Message.conversation_id == self.conversation_id)
            .order_by(Message.created_at, Message.id)
        )
        with self.engine.connect() as conn:
            return list(conn.scalars(query))

    def in_stream(self) -> list[str]:
        held = self.emu.state()["messages"].get(self.cid, [])
        live = [m for m in held if not m.get("deleted_at")]
        return [m["text"] for m in sorted(live, key=lambda m: (m["created_at"], m["id"]))]

    def stream_id(self, text: str) -> str:
        """Stream's id of the live message with ``text``."""
        held = self.emu.state()["messages"][self.cid]
        found: str = next(m["id"] for m in held if m["text"] == text and not m.get("deleted_at"))
        return found

    def db_read(self, k: int) -> datetime | None:
        with self.engine.connect() as conn:
            return conn.scalar(
                select(ConversationParticipant.last_read_at).where(
                    ConversationParticipant.conversation_id == self.conversation_id,
                    ConversationParticipant.user_id == self.people[k].id,
                )
            )

    def stream_read(self, k: int) -> tuple[datetime | None, str | None]:
        """The member's ``last_read`` in Stream, and the message read up to."""
        records = self.emu.state()["channels"][self.cid]["member_records"]
        member = records.get(str(self.people[k].id)) or {}
        return _time(member.get("last_read")), member.get("last_read_message_id")

    def in_stream_as_expected(self, what: str, process: subprocess.Popen[str]) -> None:
        wait_for(lambda: self.in_stream() == self.expected, what, timeout=60, process=process)

    def on_both_sides(self, what: str, process: subprocess.Popen[str]) -> None:
        self.in_stream_as_expected(f"{what} in Stream", process)
        wait_for(
            lambda: self.in_db() == self.expected,
            f"{what} in the app's database",
            timeout=60,
            process=process,
        )

    # -- what the users do: the old client's through the app, the new one's in Stream ----

    def write(self, k: int, text: str) -> str | None:
        """User ``k`` writes ``text`` on their client; Stream's id of a message sent there.
        Stream stamps a message on arrival: one the app writes is to be waited for in
        Stream before the next is written, or the two sides may order them differently."""
        self.expected.append(text)
        if k in NEW:
            sent = self.clients[k].send_message(self.cid, {"text": text})
            return str(sent["message"]["id"])
        self.app_write(k, text)
        return None

    def app_write(self, k: int, text: str) -> None:
        """User ``k`` writes ``text`` through the app's session (the old client)."""
        with self.sessions() as session, session.begin():
            person = self.people[k]
            session.add(
                Message(conversation_id=self.conversation_id, sender_id=person.id, content=text)
            )

    def edit(self, k: int, text: str, new_text: str) -> None:
        self.expected[self.expected.index(text)] = new_text
        if k in NEW:
            self.clients[k].update_message({"id": self.stream_id(text), "text": new_text})
            return
        with self.sessions() as session, session.begin():
            self._app_message(session, text).content = new_text

    def delete(self, k: int, text: str) -> None:
        self.expected.remove(text)
        if k in NEW:
            self.clients[k].delete_message(self.stream_id(text))
            return
        with self.sessions() as session, session.begin():
            session.delete(self._app_message(session, text))

    def read(self, k: int) -> datetime:
        """User ``k`` reads the conversation; the time just before."""
        read_at = datetime.now(UTC)
        if k in NEW:
            self.clients[k].mark_read(self.cid)
            return read_at
        with self.sessions() as session, session.begin():
            key = (self.conversation_id, self.people[k].id)
            session.get_one(ConversationParticipant, key).last_read_at = read_at
        return read_at

    def _app_message(self, session: Session, text: str) -> Message:
        query = select(Message).where(
            Message.conversation_id == self.conversation_id, Message.content == text
        )
        return session.scalars(query).one()

    # -- reads on the other side -------------------------------------------------------------

    def app_read_in_stream(self, k: int, read_at: datetime, upto: str) -> None:
        """The app's read of user ``k`` is in Stream: ``last_read`` moved to ``read_at`` at
        least, up to the message with text ``upto``."""

        def arrived() -> bool:
            last_read = self.stream_read(k)[0]
            return last_read is not None and last_read >= read_at

        wait_for(arrived, f"user {k}'s read in Stream", timeout=60)
        assert self.stream_read(k)[1] == self.stream_id(upto)

    def client_read_in_db(self, k: int, read_at: datetime) -> None:
        """The new client's read of user ``k`` is in the app: ``last_read_at`` is Stream's
        ``last_read`` to the microsecond, at or after ``read_at``."""

        def arrived() -> bool:
            last_read = self.stream_read(k)[0]
            return last_read is not None and self.db_read(k) == last_read

        wait_for(arrived, f"user {k}'s read in the app's database", timeout=60)
        moved = self.db_read(k)
        assert moved is not None and moved >= read_at, (moved, read_at)


def _inbox_rows(engine: Engine) -> list[dict[str, Any]]:
    """The webhooks stored, in the order they arrived (``inbound sync``'s rows left out)."""
    query = (
        select(inbox.c.event_type, inbox.c.message_id, inbox.c.user_id, inbox.c.payload)
        .where(inbox.c.webhook_id.not_like("sync:%"))
        .order_by(inbox.c.id)
    )
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def _inbox_statuses(engine: Engine) -> dict[str, int]:
    query = select(inbox.c.status, func.count()).group_by(inbox.c.status)
    with engine.connect() as conn:
        return {status: count for status, count in conn.execute(query)}


def _settled(engine: Engine) -> bool:
    return _inbox_statuses(engine).get(InboxStatus.PENDING.value, 0) == 0


def _recorded_deleted(engine: Engine, stream_id: str) -> bool:
    query = select(message_map.c.deleted_at).where(message_map.c.stream_id == stream_id)
    with engine.connect() as conn:
        return conn.scalar(query) is not None


def _deliveries(attempts: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The emulator's webhook attempts by webhook id."""
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for attempt in attempts:
        by_id[attempt["webhook_id"]].append(attempt)
    return by_id


def _answered(attempt: dict[str, Any]) -> bool:
    return isinstance(attempt["outcome"], int) and 200 <= attempt["outcome"] < 300


def _sync(cli: Run, product: dict[str, str]) -> int:
    """``inbound sync --since 1h``: how many inbox rows it stored."""
    done = cli("inbound", "sync", "--since", "1h", "--json", **product)
    assert done.returncode == 0, done.stdout + done.stderr
    stored: int = json.loads(done.stdout)["stored"]
    return stored


def _app_state(chat: _Chat) -> tuple[Any, ...]:
    """Every message row of the conversation and every participant's read time."""
    query = select(Message.id, Message.content, Message.created_at, Message.sender_id).where(
        Message.conversation_id == chat.conversation_id
    )
    with chat.engine.connect() as conn:
        messages = sorted(tuple(row) for row in conn.execute(query))
    return tuple(messages), tuple(chat.db_read(k) for k in (*OLD, *NEW))


def test_two_clients_on_two_sides_see_the_same_chat_whatever_the_webhooks_do(
    emu: Emulator,
    clean_db: Engine,
    session_factory: sessionmaker[Session],
    honcho: Callable[..., subprocess.Popen[str]],
    product: dict[str, str],
    inbound_port: int,
    cli: Run,
) -> None:
    """Faults on every event type the inbound side applies: duplicated and reordered
    webhooks while the receiver is up, then the receiver stopped while both sides write,
    edit, delete and read, started again and caught up by ``inbound sync``.

    The issue asks for the receiver down for a minute. What a minute does is make Stream
    give up: it tries a refused webhook twice, a failing or timed-out one three times,
    within 15 s in all, and then never again; the emulator does the same (0.25 s between
    its two tries of a refused call). So the outage lasts until the emulator has given up
    every webhook of it (each tried as often as Stream tries, none answered), and no
    longer: from then on, a minute down or an hour loses the same events.
    """
    # Given a conversation of four, two on the app's session, two on the new client
    with session_factory() as session, session.begin():
        people, conversation = group(session, 4, "dual")
    procs = honcho("relay", "worker")
    receiver = honcho("inbound")
    try:
        chat = _Chat(
            emu, clean_db, session_factory, people, conversation.id, _its_channel(emu, procs), {}
        )
        server, http = emu.client(), requests.Session()
        for k in NEW:
            user = str(people[k].id)
            chat.clients[k] = UserClient(
                emu.base_url, emu.api_key, user, server.create_token(user), http
            )
        _receiving(receiver, inbound_port)
        _writes_under_duplicated_and_reordered_webhooks(chat, receiver)
        _reads_under_duplicated_and_reordered_webhooks(chat, receiver)
        _the_faults_happened(chat)
        stop(receiver)
        read_at = _while_the_receiver_is_down(chat, procs)
        receiver = honcho("inbound")
        _receiving(receiver, inbound_port)
        _caught_up_once_it_is_back(chat, receiver, read_at, cli, product)
    finally:
        stop(procs)
        stop(receiver)


def _its_channel(emu: Emulator, procs: subprocess.Popen[str]) -> str:
    def four_members() -> str | None:
        channels = emu.state()["channels"].items()
        return next((c for c, ch in channels if len(ch["members"]) == 4), None)

    wait_for(four_members, "the conversation's channel in Stream", timeout=60, process=procs)
    return str(four_members())


def _writes_under_duplicated_and_reordered_webhooks(
    chat: _Chat, receiver: subprocess.Popen[str]
) -> None:
    """Each fault is set once the webhooks before it are delivered, so that it falls on
    the event meant (a reordered one waits for the next event of its channel)."""
    emu = chat.emu
    # Given what the new client's users wrote in the app before their client switched
    for k in NEW:
        chat.expected.append(f"before the switch from {k}")
        chat.app_write(k, f"before the switch from {k}")
        chat.on_both_sides(f"user {k}'s message from before the switch", receiver)
    # When everyone writes twice, each message's webhook duplicated, each writer replying
    # once the message before is on both sides
    assert emu.wait_webhooks(timeout=30)
    emu.webhook_fault("duplicate", times=8, event_type="message.new")
    for n in range(2):
        for k in (*OLD, *NEW):
            chat.write(k, f"round {n} from {k}")
            chat.on_both_sides(f"round {n} from {k}", receiver)
    # And a message is edited at once, its edit's webhook before its own
    assert emu.wait_webhooks(timeout=30)
    emu.webhook_fault("reorder", seconds=HOLD, event_type="message.new")
    chat.write(2, "sent then edited")
    chat.edit(2, "sent then edited", "sent then edited, edited")
    chat.on_both_sides("a message whose edit came first", receiver)
    # And one is deleted at once, its deletion's webhook first
    emu.webhook_fault("reorder", seconds=HOLD, event_type="message.new")
    gone = str(chat.write(3, "sent then deleted"))
    chat.delete(3, "sent then deleted")
    wait_for(
        lambda: _recorded_deleted(chat.engine, gone),
        "the deletion that came first",
        timeout=60,
        process=receiver,
    )
    # And one is edited twice, the first edit's webhook after the second's, duplicated
    emu.webhook_fault("reorder", seconds=HOLD, event_type="message.updated")
    emu.webhook_fault("duplicate", event_type="message.updated")
    chat.edit(2, "round 0 from 2", "round 0 from 2, first edit")
    chat.edit(2, "round 0 from 2, first edit", "round 0 from 2, second edit")
    chat.on_both_sides("the second of two edits", receiver)
    # And each side edits and deletes: the new client's deletion arriving after its edit
    # (of a message born in the app), the edit twice, the app's deletion coming back twice
    emu.webhook_fault("reorder", seconds=HOLD, event_type="message.deleted")
    emu.webhook_fault("duplicate", event_type="message.updated")
    emu.webhook_fault("duplicate", event_type="message.deleted")
    chat.delete(3, "round 0 from 3")
    chat.edit(2, "before the switch from 2", "before the switch from 2, edited after it")
    chat.edit(0, "round 0 from 0", "round 0 from 0, edited in the app")
    chat.delete(1, "round 0 from 1")
    # Then both sides hold the same messages, once each, in the same order
    chat.on_both_sides("each side's edits and deletions", receiver)


def _reads_under_duplicated_and_reordered_webhooks(
    chat: _Chat, receiver: subprocess.Popen[str]
) -> None:
    emu = chat.emu
    # When the app's users read
    upto = chat.expected[-1]
    read_at = {k: chat.read(k) for k in OLD}
    for k in OLD:
        chat.app_read_in_stream(k, read_at[k], upto)
    # And a new client's user reads a message before its webhook is in, twice
    assert emu.wait_webhooks(timeout=30)
    emu.webhook_fault("reorder", seconds=HOLD, event_type="message.new")
    chat.write(3, "read before it arrived")
    emu.webhook_fault("duplicate", event_type="message.read")
    emu.webhook_fault("reorder", seconds=HOLD, event_type="message.read")
    read_at[2] = chat.read(2)
    # And the other reads, their webhook after the next message's
    read_at[3] = chat.read(3)
    chat.write(2, "written after the reads")
    # Then each read is on the other side, the messages on both
    for k in NEW:
        chat.client_read_in_db(k, read_at[k])
    chat.on_both_sides("the messages around the reads", receiver)
    wait_for(lambda: _settled(chat.engine), "every webhook applied", process=receiver)
    assert _inbox_statuses(chat.engine).get(InboxStatus.FAILED.value, 0) == 0


def _the_faults_happened(chat: _Chat) -> None:
    """Every fault set was used: a webhook of each type delivered twice, and each held
    back behind the next."""
    emu = chat.emu
    assert emu.wait_webhooks(timeout=30)
    assert emu.core.webhooks.state()["faults"] == []
    deliveries = _deliveries(emu.webhook_attempts()).values()
    twice = {d[0]["type"] for d in deliveries if len([a for a in d if _answered(a)]) == 2}
    assert twice >= set(APPLIED), twice
    arrived = _inbox_rows(chat.engine)
    order = [(r["event_type"], r["message_id"] or r["user_id"]) for r in arrived]

    def types_of(stream_id: str) -> list[str]:
        return [kind for kind, about in order if about == stream_id]

    assert types_of(chat.stream_id("sent then edited, edited")) == [
        "message.updated",
        "message.new",
    ]
    deleted_first = next(about for kind, about in order if kind == "message.deleted")
    assert types_of(str(deleted_first)) == ["message.deleted", "message.new"]
    twice_edited = chat.stream_id("round 0 from 2, second edit")
    texts = [r["payload"]["message"]["text"] for r in arrived if r["message_id"] == twice_edited]
    assert texts[-2:] == ["round 0 from 2, second edit", "round 0 from 2, first edit"]
    read_first, read_last = (("message.read", str(chat.people[k].id)) for k in NEW)
    unread, after = (
        ("message.new", chat.stream_id(t))
        for t in ("read before it arrived", "written after the reads")
    )
    assert order.index(read_first) < order.index(unread)
    assert order.index(after) < order.index(read_last)


def _while_the_receiver_is_down(chat: _Chat, procs: subprocess.Popen[str]) -> dict[int, datetime]:
    """The receiver stopped: both sides write, edit, delete and read; what each user
    read, and when."""
    emu = chat.emu
    down_at = time.time()
    # When, the receiver down, both sides write, edit, delete and read
    for k in (2, 0, 3, 1):
        chat.write(k, f"while down from {k}")
        chat.in_stream_as_expected(f"while down from {k}", procs)
    chat.edit(2, "while down from 2", "while down from 2, edited")
    chat.edit(3, "round 1 from 3", "round 1 from 3, edited while down")
    chat.delete(2, "round 1 from 2")
    chat.delete(3, "before the switch from 3")  # a message born in the app
    chat.edit(0, "round 1 from 0", "round 1 from 0, edited while down")
    chat.delete(1, "round 1 from 1")
    chat.in_stream_as_expected("the edits and deletions made while down", procs)
    upto = chat.in_db()[-1]
    read_at = {k: chat.read(k) for k in (*OLD, *NEW)}
    # Then the app's are in Stream
    for k in OLD:
        chat.app_read_in_stream(k, read_at[k], upto)
    # And Stream gives up on every webhook of the outage, each tried as often as Stream
    # tries a refused call, none answered
    assert emu.wait_webhooks(timeout=60), "Stream still delivering the outage's webhooks"
    lost = _deliveries([a for a in emu.webhook_attempts() if a["sent"] >= down_at])
    assert all(a["outcome"] == NETWORK_ERROR for d in lost.values() for a in d), lost
    assert {len(d) for d in lost.values()} == {attempts_allowed(NETWORK_ERROR)}, lost
    assert {d[0]["type"] for d in lost.values()} >= set(APPLIED)
    return read_at


def _caught_up_once_it_is_back(
    chat: _Chat,
    receiver: subprocess.Popen[str],
    read_at: dict[int, datetime],
    cli: Run,
    product: dict[str, str],
) -> None:
    # When the receiver is back, what the new client writes comes by webhook again, what
    # was done while it was down does not
    chat.write(2, "back from 2")
    wait_for(
        lambda: "back from 2" in chat.in_db(),
        "a message sent once the receiver is back",
        timeout=60,
        process=receiver,
    )
    assert "while down from 3" not in chat.in_db()
    # And once `inbound sync` has caught up from Stream's own state
    assert _sync(cli, product) > 0
    # Then every message is in both places once, in the same order, each edit and
    # deletion on both sides, each read on the other side
    chat.on_both_sides("everything, caught up by inbound sync", receiver)
    for k in NEW:
        chat.client_read_in_db(k, read_at[k])
    wait_for(lambda: _settled(chat.engine), "every event found applied", process=receiver)
    assert _inbox_statuses(chat.engine).get(InboxStatus.FAILED.value, 0) == 0
    assert [chat.db_read(k) for k in OLD] == [read_at[k] for k in OLD]  # the app's own
    # And verify finds both sides the same, messages included
    checked = cli("admin", "verify", "--messages", **product)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # And a second catch-up finds nothing new and changes nothing
    before = _app_state(chat)
    assert _sync(cli, product) == 0
    assert _app_state(chat) == before
