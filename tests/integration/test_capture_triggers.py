"""Capture by database triggers against real PostgreSQL: the listeners' rows, whoever writes.

The same transactions run once through sessions with the listeners installed and once
through plain sessions with the triggers installed; each transaction must leave the same
targets (and, for users and messages, the same events and payloads). Then what only
triggers see (raw SQL), what they must not write (a read time), coalescing, savepoints,
the listeners standing by, install's all-or-nothing and ``check``'s drift lines.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import install
from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.outbox import NOTIFY_CHANNEL
from stream_outbox.app_hooks.reference import (
    REFERENCE_BINDING,
    Conversation,
    ConversationParticipant,
    Event,
    EventParticipant,
    EventProposal,
    Message,
    Profile,
    User,
)
from stream_outbox.app_hooks.trigger_plpgsql import WRITTEN_MAX
from stream_outbox.app_hooks.triggers import (
    TriggerError,
    check_triggers,
    drop_triggers,
    install_triggers,
    installed_triggers,
)

Rows = list[tuple[str, str, str, dict[str, Any]]]
INSERT = "stream_outbox_capture_insert"


@pytest.fixture()
def triggers(clean_db: Engine) -> Iterator[Engine]:
    """The reference app's capture triggers, installed for one test and dropped after."""
    with clean_db.begin() as conn:
        install_triggers(conn, REFERENCE_BINDING)
    try:
        yield clean_db
    finally:
        with clean_db.begin() as conn:
            drop_triggers(conn)


def rows_by_transaction(engine: Engine) -> list[Rows]:
    """The outbox rows, grouped by the transaction that wrote them, in order; then emptied."""
    with engine.begin() as conn:
        found = conn.execute(
            text(
                "SELECT xmin::text AS tx, target_kind, target_id, event, payload "
                "FROM stream_outbox ORDER BY id"
            )
        ).all()
        conn.execute(text("DELETE FROM stream_outbox"))
    grouped: dict[str, Rows] = {}
    for tx, kind, target, event, payload in found:
        grouped.setdefault(tx, []).append((kind, target, event, payload))
    return [sorted(rows) for rows in grouped.values()]


def ids() -> dict[str, uuid.UUID]:
    names = ("org", "guest", "third", "event", "conv", "conv2", "inv", "prop", "msg")
    return {name: uuid.uuid4() for name in names}


def story(k: dict[str, uuid.UUID]) -> list[Callable[[Session], None]]:
    """Transactions of the reference app, through its ORM, each ending with a commit."""

    def sign_up(s: Session) -> None:
        s.add_all(
            [User(id=k["org"], email=f"{k['org']}@x"), User(id=k["guest"], email=f"{k['guest']}@x")]
        )
        s.flush()
        s.add_all(
            [
                Profile(user_id=k["org"], full_name="Org"),
                User(id=k["third"], email=f"{k['third']}@x"),
                Event(id=k["event"], organizer_id=k["org"], title="Party"),
            ]
        )

    def invite(s: Session) -> None:
        s.add(Conversation(id=k["conv"]))
        s.flush()
        s.add_all(
            [
                ConversationParticipant(conversation_id=k["conv"], user_id=k["org"]),
                ConversationParticipant(conversation_id=k["conv"], user_id=k["guest"]),
                EventParticipant(
                    id=k["inv"], event_id=k["event"], user_id=k["guest"], conversation_id=k["conv"]
                ),
            ]
        )

    def propose(s: Session) -> None:
        s.add(Conversation(id=k["conv2"]))
        s.flush()
        s.add(
            EventProposal(
                id=k["prop"],
                event_id=k["event"],
                proposer_id=k["third"],
                conversation_id=k["conv2"],
            )
        )

    def rename(s: Session) -> None:
        s.get(Profile, k["org"]).full_name = "Organizer"  # type: ignore[union-attr]
        s.get(User, k["guest"]).email = f"{k['guest']}@y"  # type: ignore[union-attr]
        s.get(Event, k["event"]).title = "Big party"  # type: ignore[union-attr]

    def talk(s: Session) -> None:
        s.add(Message(id=k["msg"], conversation_id=k["conv"], sender_id=k["org"], content="hi"))
        s.flush()
        s.get(Message, k["msg"]).content = "hello"  # type: ignore[union-attr]

    def read(s: Session) -> None:
        member = s.get(ConversationParticipant, (k["conv"], k["guest"]))
        member.last_read_at = s.scalar(text("SELECT now()"))  # type: ignore[union-attr]

    def leave(s: Session) -> None:
        s.delete(s.get(ConversationParticipant, (k["conv"], k["guest"])))
        s.add(ConversationParticipant(conversation_id=k["conv"], user_id=k["third"]))

    def delete_guest(s: Session) -> None:
        s.delete(s.get(User, k["guest"]))

    def delete_conversation(s: Session) -> None:
        s.delete(s.get(Conversation, k["conv2"]))

    def delete_event(s: Session) -> None:
        s.delete(s.get(Event, k["event"]))

    steps = [sign_up, invite, propose, rename, talk, read, leave, delete_event]
    return [*steps, delete_guest, delete_conversation]


def run_story(factory: sessionmaker[Session], engine: Engine) -> list[Rows]:
    k = ids()
    result = []
    for step in story(k):
        with factory() as session:
            step(session)
            session.commit()
        names = {str(value): name for name, value in k.items()}
        result.append(
            sorted(
                (kind, names.get(target, target), event, _named(payload, names))
                for rows in rows_by_transaction(engine)
                for kind, target, event, payload in rows
            )
        )
    return result


def _named(payload: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    def name(value: Any) -> Any:
        if isinstance(value, list):
            return [name(item) for item in value]
        return names.get(str(value), value)

    return {key: name(value) for key, value in payload.items()}


def test_triggers_write_for_each_transaction_the_targets_the_listeners_write(
    clean_db: Engine,
) -> None:
    listened = sessionmaker(clean_db)
    install(listened)
    by_listeners = run_story(listened, clean_db)
    with clean_db.begin() as conn:
        install_triggers(conn, REFERENCE_BINDING)
    try:
        by_triggers = run_story(sessionmaker(clean_db), clean_db)
    finally:
        with clean_db.begin() as conn:
            drop_triggers(conn)

    assert len(by_triggers) == len(by_listeners)
    for step, (mine, theirs) in enumerate(zip(by_triggers, by_listeners, strict=True)):
        assert {(k, t) for k, t, _, _ in mine} == {(k, t) for k, t, _, _ in theirs}, step
        # users and messages: the same events and payloads too (a conversation's event is
        # a hint only: the worker reads the database)
        # a hint only: the worker reads the database); reads, who read
        exact = [row for row in mine if row[0] in ("user", "message") or row[2] == "read"]
        assert exact == [
            row for row in theirs if row[0] in ("user", "message") or row[2] == "read"
        ], step
        assert len(mine) == len({(k, t) for k, t, _, _ in mine}), "one row per target"
    assert by_triggers[5] == [("conversation", "conv", "read", {"reads": ["guest"]})]
    assert ("message", "msg", "insert", {"conversation_id": "conv"}) in by_triggers[4]


def test_raw_sql_is_captured_and_coalesced_per_transaction(triggers: Engine) -> None:
    user, conv = uuid.uuid4(), uuid.uuid4()
    with triggers.begin() as conn:
        conn.execute(text("INSERT INTO users (id, email) VALUES (:u, 'raw@x')"), {"u": user})
        conn.execute(text("INSERT INTO conversations (id) VALUES (:c)"), {"c": conv})
        for _ in range(3):  # three statements, one row for the conversation
            conn.execute(text("UPDATE users SET email = email || '.' WHERE id = :u"), {"u": user})
        conn.execute(
            text(
                "INSERT INTO conversation_participants (conversation_id, user_id) VALUES (:c, :u)"
            ),
            {"c": conv, "u": user},
        )
    assert rows_by_transaction(triggers) == [
        [("conversation", str(conv), "insert", {}), ("user", str(user), "insert", {})]
    ]
    with triggers.begin() as conn:
        conn.execute(
            text("INSERT INTO stream_outbox_channel VALUES (:c, 'messaging', 'chan-1')"),
            {"c": str(conv)},
        )
        conn.execute(text("DELETE FROM conversations WHERE id = :c"), {"c": conv})
        conn.execute(text("UPDATE users SET email = 'x@x' WHERE id = :u"), {"u": user})
    [rows] = rows_by_transaction(triggers)
    assert rows == [  # the channel the map holds, for the delete to find once the row is gone
        (
            "conversation",
            str(conv),
            "delete",
            {"channel_type": "messaging", "channel_id": "chan-1"},
        ),
        ("user", str(user), "update", {}),
    ]


def test_a_trigger_written_transaction_wakes_the_relay_once_and_a_read_time_once(
    triggers: Engine,
) -> None:
    url = triggers.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        user, conv = uuid.uuid4(), uuid.uuid4()
        with triggers.begin() as conn:
            conn.execute(text("INSERT INTO users (id, email) VALUES (:u, 'n@x')"), {"u": user})
            conn.execute(text("INSERT INTO conversations (id) VALUES (:c)"), {"c": conv})
            conn.execute(
                text("INSERT INTO conversation_participants VALUES (:c, :u, NULL)"),
                {"c": conv, "u": user},
            )
        assert len(list(listener.notifies(timeout=2, stop_after=2))) == 1
        with triggers.begin() as conn:
            conn.execute(text("UPDATE conversation_participants SET last_read_at = now()"))
        assert len(list(listener.notifies(timeout=2, stop_after=2))) == 1
        with triggers.begin() as conn:  # cleared: Stream's read state is not taken back
            conn.execute(text("UPDATE conversation_participants SET last_read_at = NULL"))
        assert list(listener.notifies(timeout=0.5)) == []
    assert [rows[0][2] for rows in rows_by_transaction(triggers)] == ["insert", "read"]


def test_past_the_written_targets_memory_every_write_merges_one_row_per_target(
    triggers: Engine,
) -> None:
    users = [uuid.uuid4() for _ in range(300)]  # ~14 KB of targets: past what is kept
    conv = uuid.uuid4()
    with triggers.begin() as conn:
        for user in users:
            conn.execute(
                text("INSERT INTO users (id, email) VALUES (:u, :e)"), {"u": user, "e": f"{user}@x"}
            )
        conn.execute(text("INSERT INTO conversations (id) VALUES (:c)"), {"c": conv})
        for user in users[:3] + users[-3:]:  # a member each, statement by statement
            conn.execute(
                text("INSERT INTO conversation_participants VALUES (:c, :u, NULL)"),
                {"c": conv, "u": user},
            )
            conn.execute(text("UPDATE users SET email = email || '.' WHERE id = :u"), {"u": user})
        conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": users[0]})
    [rows] = rows_by_transaction(triggers)
    assert len(rows) == len({(kind, target) for kind, target, _, _ in rows}) == 301
    assert ("user", str(users[0]), "delete", {}) in rows
    assert ("user", str(users[-1]), "insert", {}) in rows


def test_the_written_targets_memory_stays_bounded_after_one_big_statement(
    triggers: Engine,
) -> None:
    # Given one transaction whose first statement adds 2,000 users (~86 KB of targets,
    # past what is kept) at once, as a COPY would
    users = [str(uuid.uuid4()) for _ in range(2000)]
    member, conv = users[0], uuid.uuid4()
    size = text("SELECT length(current_setting('stream_outbox.written', true))")
    with triggers.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, email) "
                "SELECT u::uuid, u || '@x' FROM unnest(CAST(:u AS text[])) u"
            ),
            {"u": users},
        )
        # Then the transaction-local setting stays within its cap, not one entry per user
        assert conn.execute(size).scalar_one() <= WRITTEN_MAX

        # When later statements of the same transaction write one target each
        conn.execute(text("INSERT INTO conversations (id) VALUES (:c)"), {"c": conv})
        conn.execute(
            text("INSERT INTO conversation_participants VALUES (:c, :u, NULL)"),
            {"c": conv, "u": member},
        )
        conn.execute(text("UPDATE users SET email = 'again@x' WHERE id = :u"), {"u": member})
        assert conn.execute(size).scalar_one() <= WRITTEN_MAX

    # Then every target has its one row: each user, and the conversation
    [rows] = rows_by_transaction(triggers)
    assert sorted((kind, target) for kind, target, _, _ in rows) == sorted(
        [("user", user) for user in users] + [("conversation", str(conv))]
    )
    assert {event for kind, _, event, _ in rows if kind == "user"} == {"insert"}


def test_a_savepoint_rolled_back_takes_its_rows_with_it(triggers: Engine) -> None:
    kept, dropped = uuid.uuid4(), uuid.uuid4()
    with Session(triggers) as session:
        session.add(User(id=kept, email="kept@x"))
        session.flush()
        savepoint = session.begin_nested()
        session.add(User(id=dropped, email="dropped@x"))
        session.flush()
        savepoint.rollback()
        session.commit()
    assert rows_by_transaction(triggers) == [[("user", str(kept), "insert", {})]]


def test_listeners_stand_by_where_the_triggers_fire(
    triggers: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    factory = sessionmaker(triggers)
    with caplog.at_level(logging.INFO, logger="stream_outbox.app_hooks.capture"):
        install(factory)
    assert "capture triggers are installed in the database" in caplog.text
    user = uuid.uuid4()
    with factory() as session:
        session.add(User(id=user, email="both@x"))
        session.commit()
    with triggers.connect() as conn:
        captured = conn.execute(text("SELECT capture_tx IS NOT NULL FROM stream_outbox")).all()
    assert captured == [(True,)], "the trigger's row only"


def test_install_is_all_or_nothing(triggers: Engine) -> None:
    before = _installed(triggers)
    with triggers.connect() as conn, conn.begin() as tx:
        conn.execute(text("ALTER TABLE profiles RENAME TO profiles_renamed"))
        with pytest.raises(ProgrammingError, match="profiles"):
            install_triggers(conn, REFERENCE_BINDING)  # profiles is the last table
        tx.rollback()
    assert _installed(triggers) == before


def test_install_refuses_an_outbox_older_than_migration_0004(clean_db: Engine) -> None:
    with clean_db.connect() as conn, conn.begin() as tx:
        conn.execute(text("ALTER TABLE stream_outbox DROP COLUMN capture_tx"))
        with pytest.raises(TriggerError, match="no capture_tx column: run `stream-outbox migrate`"):
            install_triggers(conn, REFERENCE_BINDING)
        tx.rollback()


def test_check_is_clean_after_install_and_names_a_renamed_column(triggers: Engine) -> None:
    with triggers.connect() as conn, conn.begin() as tx:
        assert check_triggers(conn, REFERENCE_BINDING) == []
        conn.execute(text("ALTER TABLE messages RENAME COLUMN content TO body"))
        assert check_triggers(conn, REFERENCE_BINDING) == [
            "messages.content: read by the capture triggers, but the table has no such column "
            "(renamed or dropped?); update the binding and run `stream-outbox triggers install`"
        ]
        tx.rollback()


def test_check_names_a_binding_that_changed_since_install(triggers: Engine) -> None:
    without_email = Binding(
        **{**_fields_of(REFERENCE_BINDING), "fields": {"user": {"email": None}}}
    )
    with triggers.connect() as conn:
        assert check_triggers(conn, without_email) == [
            "users: stream_outbox_capture_update differs from the binding (it reads users.email)"
        ]


def test_install_again_replaces_the_functions_an_older_version_installed(
    triggers: Engine,
) -> None:
    # Given the users' insert function as an older version of stream-outbox left it:
    # another body, with the comment that version wrote for it
    with triggers.begin() as conn:
        [found] = [f for f in installed_triggers(conn) if (f.table, f.trigger) == ("users", INSERT)]
        older = found.source + "-- generated by an older version\n"
        comment = {**found.comment, "ddl": "0" * 16, "body": _digest(older)}
        conn.exec_driver_sql(
            f"CREATE OR REPLACE FUNCTION {found.function}() RETURNS trigger "
            f"LANGUAGE plpgsql AS $fn${older}$fn$"
        )
        conn.exec_driver_sql(f"COMMENT ON FUNCTION {found.function}() IS '{json.dumps(comment)}'")

    # Then check names it and says what to run
    with triggers.connect() as conn:
        assert check_triggers(conn, REFERENCE_BINDING) == [
            f"users: {INSERT} differs from what the binding and this version of "
            "stream-outbox generate: run `stream-outbox triggers install`"
        ]

    # When install runs again, Then the function is this version's and check is clean
    with triggers.begin() as conn:
        install_triggers(conn, REFERENCE_BINDING)
    with triggers.connect() as conn:
        assert check_triggers(conn, REFERENCE_BINDING) == []
        [now] = [f for f in installed_triggers(conn) if (f.table, f.trigger) == ("users", INSERT)]
        assert now.source == found.source


def test_check_names_a_function_edited_by_hand(triggers: Engine) -> None:
    with triggers.connect() as conn, conn.begin() as tx:
        conn.execute(
            text(
                "CREATE OR REPLACE FUNCTION stream_outbox_capture_users_insert() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END; $$"
            )
        )
        assert check_triggers(conn, REFERENCE_BINDING) == [
            "users: stream_outbox_capture_insert's function stream_outbox_capture_users_insert "
            "was edited by hand"
        ]
        tx.rollback()


def test_drop_leaves_nothing(triggers: Engine) -> None:
    with triggers.begin() as conn:
        assert drop_triggers(conn) == 24  # the participants' read time has its own
        assert installed_triggers(conn) == []
        names = conn.scalars(
            text("SELECT proname FROM pg_proc WHERE proname LIKE 'stream_outbox_capture%'")
        ).all()
    assert names == []


def _digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _installed(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return [(f.table, f.trigger, f.comment["ddl"]) for f in installed_triggers(conn)]


def _fields_of(binding: Binding) -> dict[str, Any]:
    roles = ("user", "profile", "event", "conversation", "participant", "message")
    return {role: getattr(binding, role) for role in (*roles, "invitation", "proposal")}
