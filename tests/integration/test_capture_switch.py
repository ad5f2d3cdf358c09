"""Switching capture modes under load loses and doubles nothing (real PostgreSQL).

Four threads of the app write through sessions with the listeners installed, as an app
keeps them while its operators switch; meanwhile the triggers are installed, then
dropped, as ``stream-outbox triggers install|drop`` do (every lock at once, without
waiting, tried again until they are free). Every committed transaction must
have exactly its targets, each once, in rows it wrote itself (a row's ``xmin``),
whichever mode wrote them; both modes must have written some; no app transaction may
fail.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import install
from stream_outbox.app_hooks.reference import (
    REFERENCE_BINDING,
    Conversation,
    ConversationParticipant,
    User,
)
from stream_outbox.app_hooks.triggers import drop_triggers, install_triggers
from stream_outbox.worker.operations.triggers import in_one_transaction

pytestmark = pytest.mark.slow

WRITERS = 4


class Writer(threading.Thread):
    """One app thread: sign-ups into new conversations, and a rename of its last user."""

    def __init__(self, factory: sessionmaker[Session], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.factory, self.stop = factory, stop
        self.committed: dict[int, set[tuple[str, str]]] = {}  # xid -> targets
        self.errors: list[str] = []

    def run(self) -> None:
        last: uuid.UUID | None = None
        while not self.stop.is_set():
            user, conversation = uuid.uuid4(), uuid.uuid4()
            targets = {("user", str(user)), ("conversation", str(conversation))}
            try:
                with self.factory() as session:
                    session.add_all(
                        [User(id=user, email=f"{user}@x"), Conversation(id=conversation)]
                    )
                    session.flush()
                    session.add(ConversationParticipant(conversation_id=conversation, user_id=user))
                    if last is not None:
                        session.get(User, last).email = f"{last}@renamed"  # type: ignore[union-attr]
                        targets.add(("user", str(last)))
                    xid = int(session.scalar(text("SELECT txid_current() % 4294967296")) or 0)
                    session.commit()
            except Exception as exc:  # noted, and the test fails
                self.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            self.committed[xid] = targets
            last = user
            # An app's load, not a benchmark's: a moment between transactions (0-3 ms).
            # Back to back on a machine busy with other tests, four writers left no moment
            # with every table free for 30 s (a switch waits for one, never for a lock).
            time.sleep(random.uniform(0, 0.003))


@pytest.mark.timeout(150)
def test_switching_modes_under_load_loses_and_doubles_nothing(clean_db: Engine) -> None:
    factory = sessionmaker(clean_db)
    install(factory)
    stop = threading.Event()
    writers = [Writer(factory, stop) for _ in range(WRITERS)]
    for writer in writers:
        writer.start()

    def switch(work: object) -> None:
        time.sleep(0.4)
        start = time.perf_counter()
        in_one_transaction(clean_db, work, wait=45)  # type: ignore[arg-type]
        print(f"switched in {time.perf_counter() - start:.3f} s")

    def install_all(conn: Connection) -> None:
        install_triggers(conn, REFERENCE_BINDING, nowait=True)

    def drop_all(conn: Connection) -> None:
        drop_triggers(conn, nowait=True)

    try:
        for work in (install_all, drop_all):
            switch(work)
        time.sleep(0.4)
    finally:
        stop.set()
        for writer in writers:
            writer.join(timeout=30)
        with clean_db.begin() as conn:
            drop_triggers(conn)

    assert [error for writer in writers for error in writer.errors] == []
    committed = {xid: t for writer in writers for xid, t in writer.committed.items()}
    with clean_db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT xmin::text::bigint, target_kind, target_id, capture_tx IS NOT NULL "
                "FROM stream_outbox"
            )
        ).all()
    written: dict[int, Counter[tuple[str, str]]] = {}
    for xid, kind, target, _ in rows:
        written.setdefault(xid, Counter())[(kind, target)] += 1
    assert set(written) == set(committed), "rows only from the app's transactions, all of them"
    for xid, targets in committed.items():
        assert written[xid] == Counter(targets), f"transaction {xid}: each target once"
    modes = Counter(by_trigger for *_, by_trigger in rows)
    assert modes[True] > 20 and modes[False] > 20, f"both modes wrote: {modes}"
    print(f"{len(committed)} transactions, rows by mode (by trigger): {dict(modes)}")
