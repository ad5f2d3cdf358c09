"""Going live through Stream's import, as the runbook says, while the app keeps writing.

Capture runs first; the history (DMs, invitations, proposals, legacy conversations,
system messages, members' read state) is exported up to a watermark and imported into
the emulator through the real SDK; the live mirror takes over at the watermark. Edits
and deletions of messages the import carries wait for the import to complete. Then
``verify --messages`` finds every message once, at its original ``created_at``, in
order, and the read state as the database holds it.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from stream_outbox.app_hooks.outbox import Status, outbox
from stream_outbox.app_hooks.reference import (
    Conversation,
    ConversationParticipant,
    Event,
    EventParticipant,
    EventProposal,
    Message,
    User,
)
from stream_outbox.emulator import Emulator
from stream_outbox.worker.store.cutover import forget_cutover
from tests.support.pipeline import Pipeline
from tests.support.settings import API_KEY, API_SECRET

pytestmark = pytest.mark.slow

START = datetime(2023, 6, 1, tzinfo=UTC)
LEGACY = 40
MESSAGES = 50  # per legacy conversation


def old_history(engine: Engine, rng: random.Random) -> dict[str, Any]:
    """Chat written before capture (no hooks): users, legacy conversations, invitations and
    proposals with their conversations, messages (the first of each a system message),
    and members' read state."""
    users = [{"id": uuid.uuid4(), "email": f"u{n}@example.com"} for n in range(60)]
    conversations: list[dict[str, Any]] = []
    participants: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    events, invitations, proposals = [], [], []
    for n in range(LEGACY + 10):
        cid = uuid.uuid4()
        created = START + timedelta(hours=n)
        conversations.append({"id": cid, "created_at": created})
        members = rng.sample(users, rng.choice([2, 3, 4]))
        for k, member in enumerate(members):
            last_read = created + timedelta(minutes=rng.randrange(MESSAGES)) if k % 2 else None
            participants.append(
                {"conversation_id": cid, "user_id": member["id"], "last_read_at": last_read}
            )
        if n >= LEGACY:  # an event's invitation or proposal, with its conversation
            event = {"id": uuid.uuid4(), "organizer_id": members[0]["id"], "title": f"Event {n}"}
            events.append(event)
            link = {"id": uuid.uuid4(), "event_id": event["id"], "conversation_id": cid}
            if n % 2:
                invitations.append({**link, "user_id": members[1]["id"]})
            else:
                proposals.append({**link, "proposer_id": members[1]["id"]})
        for k in range(MESSAGES):
            messages.append(
                {
                    "id": uuid.uuid4(),
                    "conversation_id": cid,
                    "sender_id": None if k == 0 else rng.choice(members)["id"],
                    "content": f"message {k} of {n}",
                    # microseconds, as the database keeps them: Stream keeps milliseconds
                    "created_at": created + timedelta(minutes=k, microseconds=rng.randrange(10**6)),
                }
            )
    with engine.begin() as conn:
        conn.execute(insert(User), users)
        conn.execute(insert(Conversation), conversations)
        conn.execute(insert(ConversationParticipant), participants)
        conn.execute(insert(Event), events)
        conn.execute(insert(EventParticipant), invitations)
        conn.execute(insert(EventProposal), proposals)
        conn.execute(insert(Message), messages)
    return {"users": users, "conversations": conversations, "messages": messages}


class Writer(threading.Thread):
    """The app at work through its ORM session (capture on): a message now and then in a
    conversation of its choosing, until stopped."""

    def __init__(self, sessions: Callable[[], Session], rng: random.Random, pairs: list[Any]):
        super().__init__(daemon=True)
        self.sessions, self.rng, self.pairs = sessions, rng, pairs
        self.stop = threading.Event()
        self.written = 0

    def run(self) -> None:
        while not self.stop.wait(0.02):
            conversation_id, sender = self.rng.choice(self.pairs)
            with self.sessions() as session, session.begin():
                session.add(
                    Message(
                        conversation_id=conversation_id,
                        sender_id=sender,
                        content=f"live {self.written}",
                    )
                )
            self.written += 1


def history_command(pipeline: Pipeline, emu: Emulator, *args: str) -> str:
    env = {
        **os.environ,
        "DATABASE_URL": pipeline.settings.database_url,
        "GETSTREAM_API_KEY": API_KEY,
        "GETSTREAM_API_SECRET": API_SECRET,
        "STREAM_CHAT_URL": emu.base_url,
        # the shared rate budget of verify's calls: the tests' Redis, the pipeline's prefix
        "REDIS_URL": pipeline.settings.redis_url,
        "OUTBOX_REDIS_PREFIX": pipeline.settings.redis_prefix,
    }
    command = [str(Path(sys.executable).parent / "stream-outbox"), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done.stdout


def settle(pipeline: Pipeline, timeout: float = 60.0) -> None:
    """Dispatch and work until no row is due or in flight (rechecks may wait, not yet due)."""
    due = select(outbox.c.id).where(
        outbox.c.status.in_((Status.PENDING, Status.DISPATCHED)),
        outbox.c.available_at <= datetime.now(UTC),
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pipeline.relay.drain()
        pipeline.broker.join(pipeline.settings.queue_name, timeout=int(timeout * 1000))
        with pipeline.engine.connect() as conn:
            if conn.execute(due.limit(1)).first() is None:
                return
        time.sleep(0.05)
    raise AssertionError(f"rows still due after {timeout}s: {pipeline.repo.stats()}")


def rechecks_come_due(engine: Engine) -> int:
    """Time passes: the rows of messages waiting for the import come due."""
    with engine.begin() as conn:
        return conn.execute(
            update(outbox)
            .where(outbox.c.event == "recheck", outbox.c.status == Status.PENDING)
            .values(available_at=datetime.now(UTC) - timedelta(seconds=1))
        ).rowcount


def test_going_live_through_the_import_while_the_app_writes(
    pipeline: Pipeline,
    session_factory: Callable[[], Session],
    emu: Emulator,
    tmp_path: Path,
) -> None:
    rng = random.Random(16)
    engine = pipeline.engine
    made = old_history(engine, rng)
    # Given capture running first, and the app writing: a DM opened live, messages
    with session_factory() as session, session.begin():
        ann, bob = made["users"][0]["id"], made["users"][1]["id"]
        dm = Conversation()
        session.add(dm)
        session.flush()
        session.add_all(
            ConversationParticipant(conversation_id=dm.id, user_id=u) for u in (ann, bob)
        )
    settle(pipeline)  # the live path syncs the DM's channel (its dm_ id, in the map)
    pairs = [(dm.id, ann), (dm.id, bob)]
    with engine.connect() as conn:
        pairs += [
            (row.conversation_id, row.user_id)
            for row in conn.execute(select(ConversationParticipant)).all()
        ][:40]
    writer = Writer(session_factory, rng, pairs)
    writer.start()
    try:
        time.sleep(0.5)
        # When the history is exported up to a watermark a moment ago, while the app writes
        watermark = datetime.now(UTC) - timedelta(seconds=0.2)
        out = tmp_path / "history"
        history_command(
            pipeline, emu, "history", "export", str(out), "--until", watermark.isoformat()
        )
        forget_cutover()
        # and, before the import is done, old messages are edited and deleted in the app
        old = made["messages"]
        edited, deleted = old[5]["id"], old[7]["id"]
        with session_factory() as session, session.begin():
            session.get_one(Message, edited).content = "edited after the watermark"
            session.delete(session.get_one(Message, deleted))
        settle(pipeline)
        # Then the live mirror sent nothing at or before the watermark but what it sent
        # before the export; the edit and the deletion wait for the import
        held = {m["id"] for msgs in emu.state()["messages"].values() for m in msgs}
        assert f"msg-{edited}" not in held and f"msg-{deleted}" not in held
        waiting = {
            row["target_id"]
            for row in pipeline.rows()
            if row["event"] == "recheck" and row["status"] == Status.PENDING
        }
        assert {str(edited), str(deleted)} <= waiting
        # When the files are imported through the real SDK (the app still writing)
        history_command(pipeline, emu, "history", "import", str(out), "--poll", "0.05")
        forget_cutover()
        time.sleep(0.3)
    finally:
        writer.stop.set()
        writer.join()
    # and the waiting rows come due, and everything drains
    assert rechecks_come_due(engine) >= 2
    settle(pipeline)
    assert writer.written > 20
    # Then verify finds every message once, at its original time, in order, and the
    # members' read state as the database holds it
    report = history_command(pipeline, emu, "admin", "verify", "--messages")
    assert "in step" in report, report
    counted = report.split("channels, ")[1]
    total = (LEGACY + 10) * MESSAGES - 1 + writer.written
    assert counted.startswith(f"{total} messages"), report
    # and the edit is there, and the deleted message is not
    held = {m["id"]: m for msgs in emu.state()["messages"].values() for m in msgs}
    assert held[f"msg-{edited}"]["text"] == "edited after the watermark"
    assert f"msg-{deleted}" not in held or held[f"msg-{deleted}"].get("deleted_at")
    with engine.connect() as conn:
        assert conn.execute(select(Message).where(Message.id == deleted)).first() is None
        failed = conn.execute(select(outbox.c.id).where(outbox.c.status == Status.FAILED))
        assert failed.first() is None
