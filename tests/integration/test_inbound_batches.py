"""The inbound runner's batches on real PostgreSQL: a batch applied in one transaction,
in order, each row in the batch's savepoint; a row that raises taken out alone (the
rows before and after it applied once), a duplicate applied once, the lookups read ahead
giving what each event would read alone, and ``settled_at`` the end of the applying."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, insert, select, text, update

from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.outbox import channel_map, inbox, message_map
from stream_outbox.app_hooks.reference import (
    REFERENCE_BINDING,
    Conversation,
    ConversationParticipant,
    Message,
    User,
)
from stream_outbox.worker.errors import PermanentError
from stream_outbox.worker.inbound.apply import Lookups
from stream_outbox.worker.inbound.inbox import Inbox
from stream_outbox.worker.inbound.inbox_event import event_from
from stream_outbox.worker.inbound.runner import Runner
from tests.support.stream_events import message_event

A, B = "messaging:batch-a", "messaging:batch-b"


@dataclass
class App:
    """The reference app: two users in two conversations, of channels ``A`` and ``B``."""

    engine: Engine
    ada: str
    bob: str

    def store(self, *events: dict[str, Any], webhook_ids: list[str] | None = None) -> None:
        ids = webhook_ids or [str(uuid.uuid4()) for _ in events]
        Inbox(self.engine).store_many([event_from(e, w) for e, w in zip(events, ids, strict=True)])

    def new(self, cid: str, message_id: str, said: str, **times: float) -> dict[str, Any]:
        return message_event("message.new", cid, message_id, self.ada, said, **times)

    def settled(self) -> list[tuple[str, str | None]]:
        """Each inbox row's status and error or reason, in id order."""
        query = select(inbox.c.status, inbox.c.last_error).order_by(inbox.c.id)
        with self.engine.connect() as conn:
            return [(row.status, row.last_error) for row in conn.execute(query)]

    def texts(self) -> list[str]:
        with self.engine.connect() as conn:
            return sorted(conn.scalars(select(Message.content)))

    def mapped(self) -> dict[str, datetime | None]:
        """Stream's id of each message recorded, and its deletion time."""
        query = select(message_map.c.stream_id, message_map.c.deleted_at)
        with self.engine.connect() as conn:
            return {row.stream_id: row.deleted_at for row in conn.execute(query)}


def _conversation(conn: Connection, cid: str, users: list[uuid.UUID]) -> None:
    conversation = uuid.uuid4()
    conn.execute(insert(Conversation).values(id=conversation))
    conn.execute(
        insert(ConversationParticipant),
        [{"conversation_id": conversation, "user_id": user} for user in users],
    )
    kind, _, channel_id = cid.partition(":")
    conn.execute(
        insert(channel_map).values(
            conversation_id=str(conversation), channel_type=kind, channel_id=channel_id
        )
    )


@pytest.fixture()
def app(clean_db: Engine) -> App:
    ada, bob = uuid.uuid4(), uuid.uuid4()
    with clean_db.begin() as conn:
        conn.execute(insert(User), [{"id": ada, "email": "ada@e.com"}, {"id": bob, "email": "b@e"}])
        _conversation(conn, A, [ada, bob])
        _conversation(conn, B, [ada, bob])
    return App(clean_db, str(ada), str(bob))


def runner(engine: Engine, apply: Any = None, **options: Any) -> Runner:
    options = {"min_backoff_ms": 1, "max_backoff_ms": 5, "batch_size": 100, **options}
    return Runner(engine, REFERENCE_BINDING, apply, **options)


# -- the real applier ------------------------------------------------------------------------


def test_a_batch_applies_each_messages_events_in_turn(app: App) -> None:
    # Given one batch with a message's new, edit and deletion, and another's new and edit
    app.store(
        app.new(A, "m1", "first"),
        app.new(B, "m2", "second"),
        message_event("message.updated", A, "m1", app.ada, "first, edited", updated=1),
        message_event("message.updated", B, "m2", app.ada, "second, edited", updated=1),
        message_event("message.deleted", A, "m1", app.ada, "first, edited", deleted=2),
    )
    # When the runner passes once
    assert runner(app.engine).run_once() == 5
    # Then each event found what the one before it wrote (the map row read ahead is the
    # first event's only): one row per message, the edit applied, the deletion too
    assert app.settled() == [("done", None)] * 5
    assert app.texts() == ["second, edited"]
    assert sorted(app.mapped()) == ["m1", "m2"] and app.mapped()["m1"] is not None


def test_a_duplicate_in_one_batch_is_applied_once(app: App) -> None:
    # Given a message.new delivered twice (two webhook ids) and a webhook stored twice
    event = app.new(A, "m1", "once")
    app.store(event, event, app.new(A, "m2", "twice"), webhook_ids=["w1", "w2", "w3"])
    app.store(app.new(A, "m2", "twice"), webhook_ids=["w3"])
    # When the runner passes once
    runner(app.engine).run_once()
    # Then one row each in the app and in the map, the second delivery found recorded
    assert app.texts() == ["once", "twice"]
    assert sorted(app.mapped()) == ["m1", "m2"]
    assert app.settled() == [("done", None)] * 3


def test_one_refused_event_fails_alone_and_the_batch_goes_on(app: App) -> None:
    # Given the app's table refusing one text (the database aborts the statement)
    with app.engine.begin() as conn:
        conn.execute(text("ALTER TABLE messages ADD CONSTRAINT no_refused CHECK (content <> 'no')"))
    try:
        # And a batch where that text and a user the app does not have sit between a
        # message's new and its edit, in two channels
        app.store(
            app.new(A, "m1", "before"),
            app.new(B, "m2", "no"),
            message_event("message.new", A, "m3", "no-such-user", "stranger"),
            message_event("message.updated", A, "m1", app.ada, "after", updated=1),
            app.new(B, "m4", "last"),
        )
        # When the runner passes once
        assert runner(app.engine).run_once() == 5
    finally:
        with app.engine.begin() as conn:
            conn.execute(text("ALTER TABLE messages DROP CONSTRAINT no_refused"))
    # Then those two fail with their reason, the others are applied once each
    statuses = app.settled()
    assert [status for status, _ in statuses] == ["done", "failed", "failed", "done", "done"]
    assert "the app's table refused message.new" in str(statuses[1][1])
    assert "is not a user of the app" in str(statuses[2][1])
    assert app.texts() == ["after", "last"]
    assert sorted(app.mapped()) == ["m1", "m4"]


def test_a_deferred_constraint_fails_its_row_not_the_batch(app: App) -> None:
    # Given a constraint trigger of the app's, deferred to the commit, refusing one text
    with app.engine.begin() as conn:
        conn.execute(text(_REFUSE_FUNCTION))
        conn.execute(
            text(
                "CREATE CONSTRAINT TRIGGER refuse_no AFTER INSERT ON messages "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_no()"
            )
        )
    try:
        app.store(app.new(A, "m1", "yes"), app.new(A, "m2", "no"), app.new(A, "m3", "yes too"))
        # When the runner passes once
        runner(app.engine).run_once()
    finally:
        with app.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER refuse_no ON messages"))
            conn.execute(text("DROP FUNCTION refuse_no()"))
    # Then the row it refuses fails as it is written, and the batch commits the others
    assert [status for status, _ in app.settled()] == ["done", "failed", "done"]
    assert app.texts() == ["yes", "yes too"]


_REFUSE_FUNCTION = """
CREATE FUNCTION refuse_no() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.content = 'no' THEN
        RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$
"""


def test_lookups_read_ahead_say_what_each_event_would_read_alone(app: App) -> None:
    # Given channel B's conversation gone (its channel deleted) and a channel unknown
    with app.engine.begin() as conn:
        conn.execute(
            update(channel_map)
            .where(channel_map.c.channel_id == "batch-b")
            .values(deleted_at=text("now()"))
        )
    app.store(
        app.new(A, "m1", "kept"),
        app.new(B, "m2", "gone"),
        app.new("messaging:nowhere", "m3", "unknown"),
        message_event("message.new", A, "m4", app.bob, "bob's"),
    )
    # When the runner passes once
    runner(app.engine).run_once()
    # Then each settles with the reason it would have alone
    assert app.settled() == [
        ("done", None),
        ("ignored", "channel messaging:batch-b: its conversation is gone"),
        ("ignored", "unknown channel messaging:nowhere: reported"),
        ("done", None),
    ]
    assert app.texts() == ["bob's", "kept"]


def test_settled_at_is_when_the_applying_ended(app: App) -> None:
    # Given an applier taking 0.2 s an event
    def slow(conn: Connection, binding: Binding, event: dict[str, Any], seen: Lookups) -> str:
        time.sleep(0.2)
        return "applied"

    app.store(*(app.new(A, f"m{n}", str(n)) for n in range(3)))
    with app.engine.connect() as conn:
        started = conn.scalar(text("SELECT clock_timestamp()"))
    # When the runner applies the three in one batch
    runner(app.engine, slow).run_once()
    # Then each row's settled_at is after the three were applied, not the batch's start
    with app.engine.connect() as conn:
        settled = list(conn.scalars(select(inbox.c.settled_at)))
    assert len(settled) == 3
    assert all((at - started).total_seconds() >= 0.6 for at in settled)


# -- a stand-in applier writing on the batch's connection ----------------------------------


@pytest.fixture()
def written(clean_db: Engine) -> Iterator[Callable[[], list[tuple[str, str]]]]:
    """A scratch table the stand-in writes each applied event into, in the batch's
    transaction; what it holds once committed, in the order written."""
    with clean_db.begin() as conn:
        conn.execute(text("CREATE TABLE applied (n serial PRIMARY KEY, cid text, said text)"))

    def rows() -> list[tuple[str, str]]:
        with clean_db.connect() as conn:
            return [
                tuple(r) for r in conn.execute(text("SELECT cid, said FROM applied ORDER BY n"))
            ]  # type: ignore[misc]

    try:
        yield rows
    finally:
        with clean_db.begin() as conn:
            conn.execute(text("DROP TABLE applied"))


def writing(bad: set[str]) -> Callable[[Connection, Binding, dict[str, Any], Lookups], str]:
    """An applier writing the event's channel and text, raising for texts in ``bad``
    after its write (which the row's savepoint must undo)."""

    def apply(conn: Connection, binding: Binding, event: dict[str, Any], seen: Lookups) -> str:
        said = event["message"]["text"]
        conn.execute(
            text("INSERT INTO applied (cid, said) VALUES (:c, :s)"), {"c": event["cid"], "s": said}
        )
        if said in bad:
            raise PermanentError(f"{said} refused")
        return "applied"

    return apply


def test_rows_around_a_failing_row_are_written_once_in_each_channels_order(
    app: App, written: Callable[[], list[tuple[str, str]]]
) -> None:
    # Given 12 events over two channels, the fifth and the ninth refused
    texts = [f"{n:02d}" for n in range(12)]
    app.store(*(app.new(A if n % 2 else B, f"m{n}", said) for n, said in enumerate(texts)))
    # When the runner passes once
    assert runner(app.engine, writing({"04", "08"})).run_once() == 12
    # Then the refused rows' writes are undone, every other row's kept once, in order
    assert written() == [
        (A if n % 2 else B, t) for n, t in enumerate(texts) if t not in ("04", "08")
    ]
    statuses = [status for status, _ in app.settled()]
    assert statuses == ["failed" if t in ("04", "08") else "done" for t in texts]


def test_a_put_off_row_holds_back_its_channel_and_not_the_others(
    app: App, written: Callable[[], list[tuple[str, str]]]
) -> None:
    # Given an applier failing "a2" once, as a database busy for a moment fails
    failed: list[str] = []

    def busy_once(conn: Connection, binding: Binding, event: dict[str, Any], seen: Lookups) -> str:
        if event["message"]["text"] == "a2" and not failed:
            failed.append("a2")
            raise RuntimeError("the database is busy")
        return writing(set())(conn, binding, event, seen)

    app.store(*(app.new(cid, f"{said}-id", said) for cid, said in _INTERLEAVED))
    run = runner(app.engine, busy_once)
    # When the runner passes once: channel A stops at a2, channel B goes on
    assert run.run_once() == 6
    assert written() == [(A, "a1"), (B, "b1"), (B, "b2"), (B, "b3")]
    # Then, once a2's backoff has passed, a2 and a3 follow in order
    deadline = time.monotonic() + 10
    while len(written()) < 6 and time.monotonic() < deadline:
        run.run_once()
    assert written()[4:] == [(A, "a2"), (A, "a3")]
    assert [status for status, _ in app.settled()] == ["done"] * 6


_INTERLEAVED = [(A, "a1"), (B, "b1"), (A, "a2"), (B, "b2"), (A, "a3"), (B, "b3")]
