"""Capture by database triggers: writes the session listeners never see reach Stream.

With the capture triggers of the reference binding installed (and no listener), raw
SQL inserts, updates and deletes, an ORM bulk insert, a ``COPY ... FROM STDIN``,
changes made inside the database (a ``DO`` block, foreign-key cascades) each write
their outbox rows in their own transaction; once the outbox drains, Stream holds what
the database says (``compare`` is empty). The same writes with listeners only leave
Stream behind, so the check can fail. A ``COPY`` of many participants into a few
conversations writes one outbox row per conversation. Edge cases in one transaction:
a member moved by updating its key, a user or a conversation deleted and back, an
upsert, a member leaving and joining again.

The triggers are dropped after each test: the test database is shared by every later
test of the run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks.outbox import outbox
from stream_outbox.app_hooks.reference import (
    ConversationParticipant,
    Profile,
    User,
)
from stream_outbox.app_hooks.triggers import triggers_installed
from tests.apps.shapes import BINDING as SHAPES
from tests.support.database import capture_triggers
from tests.support.pipeline import Pipeline, drift


def outbox_rows(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        query = select(outbox.c.target_kind, outbox.c.target_id).order_by(outbox.c.id)
        return [(kind, target) for kind, target in conn.execute(query)]


def _ids(n: int) -> list[uuid.UUID]:
    return [uuid.uuid4() for _ in range(n)]


def _sql(conn: Connection, statement: str, **params: Any) -> None:
    conn.execute(text(statement), params)


# -- the writes -----------------------------------------------------------------------


class RawWrites:
    """An app's writes in raw SQL (``text()``), as a script or another service makes them."""

    def __init__(self) -> None:
        self.users = _ids(5)
        self.event = uuid.uuid4()
        self.conversations = _ids(3)
        self.invitations = _ids(2)

    def create(self, conn: Connection) -> None:
        u, c = self.users, self.conversations
        for n, user in enumerate(u):
            _sql(
                conn, "INSERT INTO users (id, email) VALUES (:id, :email)", id=user, email=f"{n}@x"
            )
        _sql(
            conn,
            "INSERT INTO profiles (user_id, full_name, avatar_url) VALUES "
            "(:a, 'Ann Raw', 'https://img.example/a.png'), (:b, 'Bob Raw', NULL)",
            a=u[0],
            b=u[1],
        )
        _sql(conn, "INSERT INTO events (id, organizer_id, title) VALUES (:id, :o, 'Raw launch')",
             id=self.event, o=u[0])  # fmt: skip
        _sql(conn, "INSERT INTO conversations (id) VALUES (:a), (:b), (:c)", a=c[0], b=c[1], c=c[2])
        members = [(c[0], u[0]), (c[0], u[1]), (c[0], u[2]), (c[1], u[0]), (c[1], u[3])]
        for conversation, user in members:
            _sql(
                conn,
                "INSERT INTO conversation_participants (conversation_id, user_id) VALUES (:c, :u)",
                c=conversation,
                u=user,
            )
        for invitation, (guest, conversation) in zip(
            self.invitations, [(u[1], c[0]), (u[3], c[1])], strict=True
        ):
            _sql(
                conn,
                "INSERT INTO event_participants (id, event_id, user_id, conversation_id) "
                "VALUES (:id, :e, :u, :c)",
                id=invitation,
                e=self.event,
                u=guest,
                c=conversation,
            )
        _sql(
            conn,
            "INSERT INTO messages (id, conversation_id, sender_id, content) "
            "VALUES (:id, :c, :u, 'raw hello')",
            id=uuid.uuid4(),
            c=c[0],
            u=u[2],
        )

    def change(self, conn: Connection) -> None:
        """Renames, members joining and leaving, an invitation moved and one withdrawn."""
        u, c = self.users, self.conversations
        _sql(conn, "UPDATE profiles SET full_name = 'Bob Renamed' WHERE user_id = :u", u=u[1])
        _sql(conn, "UPDATE profiles SET avatar_url = NULL WHERE user_id = :u", u=u[0])
        _sql(conn, "INSERT INTO profiles (user_id, full_name) VALUES (:u, 'Cy New')", u=u[2])
        _sql(conn, "UPDATE events SET title = 'Raw launch party' WHERE id = :e", e=self.event)
        _sql(
            conn,
            "DELETE FROM conversation_participants WHERE conversation_id = :c AND user_id = :u",
            c=c[0],
            u=u[2],
        )
        _sql(
            conn,
            "INSERT INTO conversation_participants (conversation_id, user_id) "
            "VALUES (:c, :a), (:c, :b)",
            c=c[2],
            a=u[3],
            b=u[4],
        )
        _sql(
            conn,
            "UPDATE event_participants SET conversation_id = :c WHERE id = :i",
            c=c[2],
            i=self.invitations[1],
        )
        _sql(conn, "DELETE FROM event_participants WHERE id = :i", i=self.invitations[0])

    def delete(self, conn: Connection) -> None:
        """A user deleted (cascades to their memberships) and a conversation deleted."""
        _sql(conn, "DELETE FROM users WHERE id = :u", u=self.users[4])
        _sql(conn, "DELETE FROM conversations WHERE id = :c", c=self.conversations[1])


# -- with triggers, no listener -------------------------------------------------------


def test_raw_sql_writes_converge_with_triggers(
    pipeline: Pipeline, trigger_sessions: sessionmaker[Session]
) -> None:
    writes = RawWrites()
    for step in (writes.create, writes.change, writes.delete):
        with pipeline.engine.begin() as conn:
            step(conn)
        pipeline.drain()
        assert drift(pipeline, writes.conversations) == [], step.__name__
    state = pipeline.emu.state()
    assert state["users"][str(writes.users[1])]["name"] == "Bob Renamed"
    assert state["users"][str(writes.users[4])].get("deactivated_at")
    assert {row["status"] for row in pipeline.rows()} == {"done"}


def test_orm_bulk_insert_converges_with_triggers(
    pipeline: Pipeline, trigger_sessions: sessionmaker[Session]
) -> None:
    users, conversation = _ids(4), uuid.uuid4()
    with trigger_sessions() as session, session.begin():
        session.execute(
            insert(User), [{"id": u, "email": f"bulk{n}@x"} for n, u in enumerate(users)]
        )
        session.execute(
            insert(Profile), [{"user_id": u, "full_name": f"Bulk {n}"} for n, u in enumerate(users)]
        )
        _sql(session.connection(), "INSERT INTO conversations (id) VALUES (:c)", c=conversation)
        session.execute(
            insert(ConversationParticipant),
            [{"conversation_id": conversation, "user_id": u} for u in users],
        )
    pipeline.drain()
    assert drift(pipeline) == []
    assert {row["status"] for row in pipeline.rows()} == {"done"}
    assert sorted(pipeline.emu.state()["users"]) == sorted(str(u) for u in users)


def test_changes_inside_the_database_converge_with_triggers(
    pipeline: Pipeline, trigger_sessions: sessionmaker[Session]
) -> None:
    """A ``DO`` block and foreign-key cascades: changes no application session sees."""
    writes = RawWrites()
    with pipeline.engine.begin() as conn:
        writes.create(conn)
    pipeline.drain()
    with pipeline.engine.begin() as conn:
        # server-side code renames every profile: no statement the app sent names them
        conn.exec_driver_sql(
            "DO $$ BEGIN UPDATE profiles SET full_name = full_name || ' (server)'; END $$"
        )
        # a conversation deleted: its invitations' conversation_id set to NULL, its
        # participants deleted, by the foreign keys
        _sql(conn, "DELETE FROM conversations WHERE id = :c", c=writes.conversations[0])
    pipeline.drain()
    assert drift(pipeline, writes.conversations) == []
    names = {u["name"] for u in pipeline.emu.state()["users"].values()}
    assert {"Ann Raw (server)", "Bob Raw (server)"} <= names


def _copy_participants(engine: Engine, pairs: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """``COPY conversation_participants FROM STDIN`` through psycopg, in one transaction."""
    with engine.begin() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        with (
            driver.cursor() as cursor,
            cursor.copy(
                "COPY conversation_participants (conversation_id, user_id) FROM STDIN"
            ) as copy,
        ):
            for pair in pairs:
                copy.write_row(pair)


def test_a_copy_writes_one_row_per_conversation_and_converges(
    pipeline: Pipeline, trigger_sessions: sessionmaker[Session]
) -> None:
    users, conversations = _ids(60), _ids(3)
    with trigger_sessions() as session, session.begin():
        session.execute(
            insert(User), [{"id": u, "email": f"copy{n}@x"} for n, u in enumerate(users)]
        )
        _sql(
            session.connection(),
            "INSERT INTO conversations (id) SELECT unnest(CAST(:ids AS uuid[]))",
            ids=conversations,
        )
    before = len(outbox_rows(pipeline.engine))
    pairs = [(c, u) for u in users for c in conversations]  # 180 participants
    _copy_participants(pipeline.engine, pairs)

    written = outbox_rows(pipeline.engine)[before:]
    assert sorted(written) == sorted(("conversation", str(c)) for c in conversations)
    pipeline.drain()
    assert drift(pipeline) == []
    channels = pipeline.emu.state()["channels"]
    assert sorted(len(channel["members"]) for channel in channels.values()) == [60, 60, 60]


def test_soft_deletes_in_raw_sql_converge_with_triggers(
    pipeline: Pipeline, shapes: sessionmaker[Session]
) -> None:
    """A soft-deleting app (tables ``bs_*``): marks set and cleared by SQL no session sees."""
    thread = uuid.uuid4()
    with capture_triggers(pipeline.engine, SHAPES):
        with pipeline.engine.begin() as conn:
            _sql(
                conn,
                "INSERT INTO bs_accounts (id, email_address, first_name, last_name) VALUES "
                "(1, 'a@x', 'Ada', 'Soft'), (2, 'b@x', 'Bea', NULL), (3, 'c@x', NULL, 'Cy')",
            )
            _sql(conn, "INSERT INTO bs_photos (account_id, url) VALUES (1, 'https://p/1.png')")
            _sql(conn, "INSERT INTO bs_threads (id) VALUES (:t)", t=thread)
            _sql(
                conn,
                "INSERT INTO bs_members (thread_id, account_id) VALUES (:t, 1), (:t, 2), (:t, 3)",
                t=thread,
            )
            _sql(conn, "INSERT INTO bs_posts (key, thread_id, author_id, body) "
                 "VALUES ('k1', :t, 2, 'soft hello')", t=thread)  # fmt: skip
        pipeline.drain()
        assert drift(pipeline, [thread], SHAPES) == []
        steps = [
            "UPDATE bs_accounts SET deleted_at = now() WHERE id = 3",
            "UPDATE bs_members SET left_at = now() WHERE account_id = 2",
            "UPDATE bs_photos SET url = 'https://p/1b.png' WHERE account_id = 1",
            "UPDATE bs_posts SET deleted_at = now() WHERE key = 'k1'",
            "UPDATE bs_members SET left_at = NULL WHERE account_id = 2",
            "UPDATE bs_accounts SET deleted_at = NULL, first_name = 'Cyd' WHERE id = 3",
            "UPDATE bs_threads SET deleted_at = now()",
        ]
        for statement in steps:
            with pipeline.engine.begin() as conn:
                _sql(conn, statement)
            pipeline.drain()
            assert drift(pipeline, [thread], SHAPES) == [], statement
    assert {row["status"] for row in pipeline.rows()} == {"done"}


# Raw statements in one transaction after RawWrites.create, on its users :u0-:u4,
# conversations :c0-:c2 and invitations :i0-:i1.
EDGE_CASES: dict[str, list[str]] = {
    "a_member_moved_by_updating_its_key": [
        "UPDATE conversation_participants SET conversation_id = :c1 "
        "WHERE conversation_id = :c0 AND user_id = :u2",
    ],
    "a_user_deleted_and_back_in_one_transaction": [
        "DELETE FROM users WHERE id = :u3",
        "INSERT INTO users (id, email) VALUES (:u3, '3@x')",
        "INSERT INTO profiles (user_id, full_name) VALUES (:u3, 'Back Again')",
        "INSERT INTO conversation_participants (conversation_id, user_id) VALUES (:c0, :u3)",
    ],
    "a_conversation_deleted_and_back_in_one_transaction": [
        "DELETE FROM conversations WHERE id = :c2",
        "INSERT INTO conversations (id) VALUES (:c2)",
        "INSERT INTO conversation_participants (conversation_id, user_id) VALUES (:c2, :u0)",
    ],
    "an_upsert_of_profiles": [
        "INSERT INTO profiles (user_id, full_name) VALUES (:u0, 'Ann Upsert'), (:u4, 'Eve New') "
        "ON CONFLICT (user_id) DO UPDATE SET full_name = EXCLUDED.full_name",
    ],
    "a_profile_deleted_and_a_message_edited": [
        "DELETE FROM profiles WHERE user_id = :u1",
        "UPDATE messages SET content = 'edited raw'",
    ],
    "a_member_leaves_and_joins_again_in_one_transaction": [
        "DELETE FROM conversation_participants WHERE conversation_id = :c0 AND user_id = :u1",
        "INSERT INTO conversation_participants (conversation_id, user_id) VALUES (:c0, :u1)",
        "DELETE FROM conversation_participants WHERE conversation_id = :c1 AND user_id = :u3",
    ],
    "an_invitation_moved_to_another_event": [
        "INSERT INTO events (id, organizer_id, title) SELECT gen_random_uuid(), :u1, 'Other'",
        "UPDATE event_participants SET event_id = (SELECT id FROM events WHERE title = 'Other') "
        "WHERE id = :i0",
    ],
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_an_edge_case_in_raw_sql_converges_with_triggers(
    pipeline: Pipeline, trigger_sessions: sessionmaker[Session], case: str
) -> None:
    writes = RawWrites()
    with pipeline.engine.begin() as conn:
        writes.create(conn)
    pipeline.drain()
    params = {f"u{n}": u for n, u in enumerate(writes.users)}
    params |= {f"c{n}": c for n, c in enumerate(writes.conversations)}
    params |= {f"i{n}": i for n, i in enumerate(writes.invitations)}
    with pipeline.engine.begin() as conn:  # the case's statements, in one transaction
        for statement in EDGE_CASES[case]:
            _sql(conn, statement, **{k: v for k, v in params.items() if f":{k}" in statement})
    pipeline.drain()
    assert drift(pipeline, writes.conversations) == []
    assert {row["status"] for row in pipeline.rows()} == {"done"}


# -- without triggers: the listeners miss them ---------------------------------------


def test_raw_sql_writes_drift_without_triggers(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    """The listeners capture ORM sessions only: the raw writes never reach Stream."""
    with pipeline.engine.connect() as conn:
        assert not triggers_installed(conn)
    writes = RawWrites()
    with session_factory() as session, session.begin():
        writes.create(session.connection())
    pipeline.drain()
    assert outbox_rows(pipeline.engine) == []
    found = drift(pipeline, writes.conversations)
    assert any(str(writes.users[0]) in line for line in found), found
    assert pipeline.emu.state()["users"] == {}


def test_a_read_time_writes_read_rows_only(
    pipeline: Pipeline, trigger_sessions: sessionmaker[Session]
) -> None:
    """An update of a read time writes a read row a participant (who read), and no row of
    the members' trigger (a column it does not watch)."""
    users, conversation = _ids(3), uuid.uuid4()
    with pipeline.engine.begin() as conn:
        _sql(conn, "INSERT INTO conversations (id) VALUES (:c)", c=conversation)
        for n, user in enumerate(users):
            _sql(conn, "INSERT INTO users (id, email) VALUES (:id, :e)", id=user, e=f"r{n}@x")
    _copy_participants(pipeline.engine, [(conversation, u) for u in users])
    before = len(outbox_rows(pipeline.engine))
    with pipeline.engine.begin() as conn:
        _sql(conn, "UPDATE conversation_participants SET last_read_at = now()")
    rows = pipeline.rows()[before:]
    found = sorted((row["event"], row["target_id"], *row["payload"]["reads"]) for row in rows)
    assert found == sorted(("read", str(conversation), str(user)) for user in users)
