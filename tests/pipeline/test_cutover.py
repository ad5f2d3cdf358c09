"""Going live through Stream's import, as the runbook says, while the app keeps writing.

Capture runs first; the history (DMs, invitations, proposals, legacy conversations,
system messages, members' read state) is exported up to a watermark and imported into
the emulator through the real SDK; the live mirror takes over at the watermark. Edits
and deletions of messages the import carries wait for the import to complete. Then
``verify --messages`` finds every message once, at its original ``created_at``, in
order, and the read state as the database holds it.

The second test changes the app at every moment of the cut-over, on the shapes app
(soft deletes throughout) with Stream's default limits on: during the export (after
its snapshot), between the export and the import, and while the import runs.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import install
from stream_outbox.app_hooks.lookup import channel_for_conversation
from stream_outbox.app_hooks.on_demand import MigrationState, request_migration
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
from stream_outbox.worker.settings import Settings
from stream_outbox.worker.store.cutover import forget_cutover
from stream_outbox.worker.store.repository import OutboxRepository
from stream_outbox.worker.stream_import.export import export_history
from tests.apps.shapes import BINDING, Account, Base, Member, Post, Thread
from tests.support.pipeline import Pipeline, running_pipeline, settle
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


# -- the cut-over while the app changes everything -------------------------------------

THREADS = 60
POSTS = 20  # per thread, but the big one
BIG = 150_000
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def app(
    settings: Settings, clean_db: Engine, emu: Emulator
) -> Iterator[tuple[Pipeline, sessionmaker[Session]]]:
    """The shapes app, captured, and a pipeline that paces itself under Stream's limits."""
    Base.metadata.create_all(clean_db)
    factory = sessionmaker(clean_db, expire_on_commit=False)
    install(factory, BINDING)
    emu.set_stream_limits(True)
    paced = settings.model_copy(update={"stream_limits": True, "max_retries": 8})
    try:
        with running_pipeline(paced, clean_db, emu) as pipe, pipe.bound_to(BINDING):
            yield pipe, factory
    finally:
        names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with clean_db.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {names} CASCADE"))


def old_threads(engine: Engine, rng: random.Random) -> list[dict[str, Any]]:
    """Accounts, threads, members and posts written before capture (no hooks). Thread 0
    holds BIG posts; the first post of every thread has no author (a system message)."""
    accounts = [
        {"id": n, "email_address": f"a{n}@e.com", "first_name": f"First{n}", "last_name": "Old"}
        for n in range(1, 41)
    ]
    threads = [
        {"id": uuid.uuid4(), "opened_at": START + timedelta(hours=n)} for n in range(THREADS)
    ]
    members = [
        {"thread_id": thread["id"], "account_id": account}
        for thread in threads
        for account in rng.sample(range(1, 41), rng.choice([2, 3, 4]))
    ]
    with engine.begin() as conn:
        conn.execute(insert(Account), accounts)
        conn.execute(insert(Thread), threads)
        conn.execute(insert(Member), members)
    authors: dict[Any, list[int]] = {}
    for member in members:
        authors.setdefault(member["thread_id"], []).append(member["account_id"])
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            columns = "key, thread_id, author_id, body, posted_at"
            with cursor.copy(f"COPY bs_posts ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for n, thread in enumerate(threads):
                    for k in range(BIG if n == 0 else POSTS):
                        author = None if k == 0 else rng.choice(authors[thread["id"]])
                        moment = thread["opened_at"] + timedelta(
                            seconds=k, microseconds=rng.randrange(10**6)
                        )
                        copy.write_row((f"p{n}-{k}", thread["id"], author, f"post {k}", moment))
        raw.commit()
    finally:
        raw.close()
    return threads


def cli_env(pipeline: Pipeline) -> dict[str, str]:
    """An operator's environment, on the shapes app's binding."""
    return {
        **os.environ,
        "DATABASE_URL": pipeline.settings.database_url,
        "GETSTREAM_API_KEY": API_KEY,
        "GETSTREAM_API_SECRET": API_SECRET,
        "STREAM_CHAT_URL": pipeline.emu.base_url,
        "OUTBOX_BINDING": "tests.apps.shapes:BINDING",
        "REDIS_URL": pipeline.settings.redis_url,
        "OUTBOX_REDIS_PREFIX": pipeline.settings.redis_prefix,
    }


STREAM_OUTBOX = str(Path(sys.executable).parent / "stream-outbox")


def cli(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    """``stream-outbox`` run as an operator does."""
    return subprocess.run(
        [STREAM_OUTBOX, *args],
        env=cli_env(pipeline),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def authors_of(engine: Engine, thread: Any) -> list[int]:
    """The thread's live members."""
    with engine.connect() as conn:
        query = select(Member.account_id).where(
            Member.thread_id == thread, Member.left_at.is_(None)
        )
        return sorted(conn.scalars(query))


def come_due(engine: Engine) -> int:
    """Time passes: rows waiting for the import come due."""
    with engine.begin() as conn:
        return conn.execute(
            update(outbox)
            .where(outbox.c.status == Status.PENDING)
            .values(available_at=datetime.now(UTC) - timedelta(seconds=1))
        ).rowcount


class App:
    """The app's changes, each in a transaction of its own, through its ORM session."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def edit(self, key: str, body: str) -> None:
        with self.sessions.begin() as s:
            s.get_one(Post, key).body = body

    def delete_post(self, key: str) -> None:
        with self.sessions.begin() as s:
            s.get_one(Post, key).deleted_at = datetime.now(UTC)

    def post(self, key: str, thread: Any, author: int) -> None:
        with self.sessions.begin() as s:
            s.add(Post(key=key, thread_id=thread, author_id=author, body=f"live {key}"))

    def leave(self, thread: Any) -> int:
        """The thread's first live member leaves; returns who."""
        with self.sessions.begin() as s:
            member = s.scalars(
                select(Member)
                .where(Member.thread_id == thread, Member.left_at.is_(None))
                .order_by(Member.account_id)
            ).first()
            assert member is not None
            member.left_at = datetime.now(UTC)
            return member.account_id

    def join(self, thread: Any, account: int) -> None:
        with self.sessions.begin() as s:
            member = s.get(Member, (thread, account))
            if member is None:
                s.add(Member(thread_id=thread, account_id=account))
            else:
                member.left_at = None

    def set_thread_deleted(self, thread: Any, deleted: bool) -> None:
        with self.sessions.begin() as s:
            s.get_one(Thread, thread).deleted_at = datetime.now(UTC) if deleted else None

    def rename(self, account: int, first: str) -> None:
        with self.sessions.begin() as s:
            s.get_one(Account, account).first_name = first

    def delete_account(self, account: int) -> None:
        with self.sessions.begin() as s:
            s.get_one(Account, account).deleted_at = datetime.now(UTC)

    def open(self, thread: Any) -> MigrationState:
        """A participant opens the thread: the on-demand request the chat route makes."""
        with self.sessions.begin() as s:
            found = request_migration(s.connection(), str(thread), BINDING)
        assert found is not None
        return found.state


def stream_state(emu: Emulator) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stream's live messages by id and channels by cid."""
    state = emu.state()
    messages = {
        m["id"]: m
        for listed in state["messages"].values()
        for m in listed
        if not m.get("deleted_at")
    }
    return messages, state["channels"]


# A long scenario (an import in a subprocess, settles after each step, verify twice): the
# default 120 s guard against a hang is too short for it on a loaded two-core machine.
@pytest.mark.timeout(300)
def test_the_cut_over_keeps_every_change_made_around_it(
    app: tuple[Pipeline, sessionmaker[Session]], emu: Emulator, tmp_path: Path
) -> None:
    pipeline, sessions = app
    engine = pipeline.engine
    rng = random.Random(26)
    threads = [t["id"] for t in old_threads(engine, rng)]
    changes = App(sessions)
    # Given a thread the export will skip (deleted then) and one without members then
    skipped_deleted, skipped_empty = threads[57], threads[58]
    with sessions.begin() as s:
        s.get_one(Thread, skipped_deleted).deleted_at = START
        for member in s.scalars(select(Member).where(Member.thread_id == skipped_empty)):
            member.left_at = START
    # and a thread opened live before the export (capture on): its channel is in Stream
    with sessions.begin() as s:
        live = Thread()
        s.add(live)
        s.flush()
        s.add_all(Member(thread_id=live.id, account_id=a) for a in (1, 2))
        s.add(Post(key="live-0", thread_id=live.id, author_id=1, body="before the export"))
    settle(pipeline, 120.0)
    with engine.connect() as conn:
        found = channel_for_conversation(conn, str(live.id), BINDING)
    assert found is not None and found.synced
    live_cid = found.channel_id
    watermark = datetime.now(UTC) - timedelta(seconds=0.1)
    out = tmp_path / "history"

    # When the history is exported, and after its snapshot, while it writes messages,
    # the app edits, deletes, leaves, joins, deletes a thread, renames and deletes
    # accounts, posts, and a participant opens a thread the import carries
    during_export: dict[str, Any] = {}

    def change_during_export() -> None:
        changes.edit("p1-5", "edited during the export")
        changes.delete_post("p1-7")
        during_export["left"] = (threads[2], changes.leave(threads[2]))
        changes.join(threads[3], 39)
        changes.set_thread_deleted(threads[4], True)
        changes.rename(1, "Renamed-during-export")
        changes.delete_account(2)
        changes.post("live-1", threads[6], 3)
        during_export["opened"] = changes.open(threads[5])
        settle(pipeline, 120.0)
        with engine.connect() as conn:
            during_export["lookup"] = channel_for_conversation(conn, str(threads[5]), BINDING)

    def change_while_users_are_written() -> None:
        # before the export has come to the threads: which it carries is not known yet
        changes.join(threads[14], 37)
        changes.post("live-3", threads[15], authors_of(engine, threads[15])[0])
        settle(pipeline, 120.0)
        during_export["early"] = set(emu.state()["channels"])

    paused, early = threading.Event(), threading.Event()

    def progress(kind: str, *, done: int, total: int | None) -> None:
        if kind == "user" and not early.is_set():
            early.set()
            change_while_users_are_written()
        if kind == "message" and not paused.is_set():
            paused.set()
            change_during_export()

    result = export_history(
        engine,
        BINDING,
        OutboxRepository(engine),
        out,
        watermark=watermark,
        max_bytes=20 * 1000 * 1000,
        progress=progress,
        actor="test",
    )
    assert paused.is_set() and early.is_set() and result.counts["message"] >= BIG
    # Then no channel was created while the export ran: the import brings them
    assert during_export["early"] == {f"messaging:{live_cid}"}
    # Then the request during the export says the import brings the channel
    assert during_export["opened"] is MigrationState.PENDING_IMPORT
    assert during_export["lookup"].synced is False
    assert during_export["lookup"].pending_import is True

    # When, between the export and the import, the app goes on
    changes.set_thread_deleted(threads[4], False)  # back: after the import
    changes.set_thread_deleted(threads[7], True)
    changes.edit("p0-100", "edited between export and import")
    changes.delete_post("p0-200")
    left_between = (threads[8], changes.leave(threads[8]))
    changes.join(threads[9], 40)
    changes.rename(3, "Renamed-between")
    changes.delete_account(4)
    changes.set_thread_deleted(skipped_deleted, False)
    changes.join(skipped_empty, 5)
    changes.join(skipped_empty, 6)
    assert changes.open(threads[5]) is MigrationState.PENDING_IMPORT
    assert changes.open(skipped_deleted) is MigrationState.PENDING
    assert changes.open(skipped_empty) is MigrationState.PENDING
    forget_cutover()
    settle(pipeline, 120.0)

    # and while the import runs (each task state lasts a second at least)
    emu.set_import_options(state_seconds=1.0)
    importing = subprocess.Popen(
        [STREAM_OUTBOX, "history", "import", str(out), "--poll", "0.1"],
        env=cli_env(pipeline),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not emu.import_tasks() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert emu.import_tasks(), "the import never started"
        changes.edit("p10-3", "edited during the import")
        changes.delete_post("p10-4")
        changes.set_thread_deleted(threads[11], True)
        changes.set_thread_deleted(threads[11], False)
        changes.set_thread_deleted(threads[7], False)
        changes.join(threads[12], 38)
        left_during = (threads[13], changes.leave(threads[13]))
        changes.rename(5, "Renamed-during-import")
        changes.delete_account(6)
        changes.post("live-2", live.id, 1)
        settle(pipeline, 120.0)
        still_running = importing.poll() is None
        output, _ = importing.communicate(timeout=600)
    finally:
        if importing.poll() is None:
            importing.kill()
    assert importing.returncode == 0, output
    assert still_running, "the changes were meant to land while the import ran"

    # Then, once the import is complete and the waiting rows have come due
    forget_cutover()
    for _ in range(3):
        come_due(engine)
        settle(pipeline, 120.0)
    assert changes.open(threads[5]) is MigrationState.SYNCED
    with engine.connect() as conn:
        failed = conn.execute(
            select(outbox.c.target_id, outbox.c.last_error).where(outbox.c.status == Status.FAILED)
        ).all()
    assert failed == []
    messages, channels = stream_state(emu)
    assert messages["msg-p1-5"]["text"] == "edited during the export"
    assert messages["msg-p0-100"]["text"] == "edited between export and import"
    assert messages["msg-p10-3"]["text"] == "edited during the import"
    assert not {"msg-p1-7", "msg-p0-200", "msg-p10-4"} & set(messages)
    assert {"msg-live-1", "msg-live-2", "msg-live-0", "msg-live-3"} <= set(messages)
    assert "37" in channels[f"messaging:legacy_{threads[14]}"]["members"]
    # the threads the export skipped have their whole history (it is not the import's)
    assert {f"msg-p{n}-{k}" for n in (57, 58) for k in range(POSTS)} <= set(messages)
    # and the accounts renamed after the snapshot carry their new names
    users = emu.state()["users"]
    assert [users[str(n)]["name"] for n in (1, 3, 5)] == [
        "Renamed-during-export Old",
        "Renamed-between Old",
        "Renamed-during-import Old",
    ]
    for thread, account in (during_export["left"], left_between, left_during):
        cid = f"messaging:legacy_{thread}"
        assert str(account) not in channels[cid]["members"], (cid, account)
    # and verify finds Stream holding exactly what the database holds
    checked = cli(pipeline, "admin", "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checked = cli(pipeline, "admin", "verify", "--messages")
    assert checked.returncode == 0, checked.stdout + checked.stderr
