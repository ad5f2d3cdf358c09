"""Read state outbound: a participant's ``last_read_at`` set in the app marks the channel
read in Stream for that user (PostgreSQL, Redis, the emulator over HTTP).

Captured by the session listeners (an ORM session) and by the capture triggers (raw
SQL); either way one outbox row, and after the drain the emulator's member holds
``last_read_message_id`` = the newest message at or before the read time, for exactly
one Stream call. A read before any message, and a participant who left, cost none.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, cast, insert, inspect, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks.binding import stream_message_id
from stream_outbox.app_hooks.outbox import EXPORT_ACTION, audit, channel_map, outbox
from stream_outbox.app_hooks.reference import ConversationParticipant, Message, User
from stream_outbox.worker.store.cutover import forget_cutover
from stream_outbox.worker.sync.read_state import MESSAGE_MAP
from tests.support.pipeline import Pipeline, settle
from tests.support.story import invite

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _conversation(
    pipeline: Pipeline, new_session: Callable[[], Session], messages: int = 2
) -> dict[str, Any]:
    """An invitation with ``messages`` messages from the organizer, a minute apart from
    T0, all in Stream."""
    with new_session() as session, session.begin():
        made = invite(session)
        made["messages"] = [
            Message(
                conversation_id=made["conversation"].id,
                sender_id=made["organizer"].id,
                content=f"m{n}",
                created_at=T0 + timedelta(minutes=n),
            )
            for n in range(messages)
        ]
        session.add_all(made["messages"])
    pipeline.drain()
    made["cid"] = f"messaging:invitation_{made['invitation'].id}"
    return made


def _set_read(new_session: Callable[[], Session], made: dict[str, Any], at: datetime) -> None:
    """The guest reads the conversation at ``at``, through an ORM session."""
    with new_session() as session, session.begin():
        key = (made["conversation"].id, made["guest"].id)
        session.get_one(ConversationParticipant, key).last_read_at = at


def _member(pipeline: Pipeline, made: dict[str, Any], who: str = "guest") -> dict[str, Any]:
    record: dict[str, Any] = pipeline.emu.state()["channels"][made["cid"]]["member_records"][
        str(made[who].id)
    ]
    return record


def _read_rows(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [row for row in pipeline.rows() if row["event"] == "read"]


def test_a_read_in_an_orm_session_marks_the_channel_read_up_to_the_message_read_last(
    pipeline: Pipeline, session_factory: sessionmaker[Session]
) -> None:
    made = _conversation(pipeline, session_factory)
    pipeline.emu.reset_request_counts()
    _set_read(session_factory, made, T0 + timedelta(seconds=30))  # after m0, before m1
    assert [(row["target_id"], row["payload"]) for row in _read_rows(pipeline)] == [
        (str(made["conversation"].id), {"reads": [str(made["guest"].id)]})
    ]
    pipeline.drain()
    member = _member(pipeline, made)
    assert member["last_read_message_id"] == stream_message_id(str(made["messages"][0].id))
    assert member["last_read"]
    assert "last_read" not in _member(pipeline, made, "organizer")
    assert pipeline.counts() == {"MarkRead": 1}  # its members left alone: one call
    assert {row["status"] for row in pipeline.rows()} == {"done"}


def test_a_read_in_raw_sql_with_the_triggers_marks_the_channel_read(
    pipeline: Pipeline,
    session_factory: sessionmaker[Session],
    trigger_sessions: sessionmaker[Session],
) -> None:
    made = _conversation(pipeline, session_factory)
    pipeline.emu.reset_request_counts()
    with pipeline.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE conversation_participants SET last_read_at = :at "
                "WHERE conversation_id = :c AND user_id = :u"
            ),
            {"at": T0 + timedelta(hours=1), "c": made["conversation"].id, "u": made["guest"].id},
        )
    assert len(_read_rows(pipeline)) == 1
    pipeline.drain()
    newest = made["messages"][-1]
    assert _member(pipeline, made)["last_read_message_id"] == stream_message_id(str(newest.id))
    assert pipeline.counts() == {"MarkRead": 1}


def test_reads_of_two_members_and_a_newcomer_go_in_one_job(
    pipeline: Pipeline, session_factory: sessionmaker[Session]
) -> None:
    """A read in the transaction that adds a member: the members are reconciled too (the
    newcomer added), then both reads marked."""
    made = _conversation(pipeline, session_factory)
    pipeline.emu.reset_request_counts()
    with session_factory() as session, session.begin():
        for who in ("organizer", "guest"):
            key = (made["conversation"].id, made[who].id)
            session.get_one(ConversationParticipant, key).last_read_at = T0 + timedelta(hours=1)
        newcomer = _new_user(session)
        session.add(
            ConversationParticipant(conversation_id=made["conversation"].id, user_id=newcomer)
        )
    pipeline.drain()
    newest = stream_message_id(str(made["messages"][-1].id))
    assert _member(pipeline, made)["last_read_message_id"] == newest
    assert _member(pipeline, made, "organizer")["last_read_message_id"] == newest
    assert str(newcomer) in pipeline.emu.state()["channels"][made["cid"]]["members"]
    assert pipeline.counts()["MarkRead"] == 2


def test_a_read_in_a_channel_without_messages_marks_nothing_and_does_not_fail(
    pipeline: Pipeline, session_factory: sessionmaker[Session]
) -> None:
    made = _conversation(pipeline, session_factory, messages=0)
    pipeline.emu.reset_request_counts()
    _set_read(session_factory, made, T0)
    pipeline.drain()
    assert pipeline.counts() == {}
    assert "last_read" not in _member(pipeline, made)
    assert {row["status"] for row in pipeline.rows()} == {"done"}


def test_a_read_older_than_the_first_message_marks_nothing(
    pipeline: Pipeline, session_factory: sessionmaker[Session]
) -> None:
    made = _conversation(pipeline, session_factory)
    pipeline.emu.reset_request_counts()
    _set_read(session_factory, made, T0 - timedelta(days=1))
    pipeline.drain()
    assert pipeline.counts() == {}  # Stream keeps the channel unread for the guest
    assert "last_read" not in _member(pipeline, made)
    assert {row["status"] for row in pipeline.rows()} == {"done"}


def test_a_participant_who_left_is_skipped(
    pipeline: Pipeline, session_factory: sessionmaker[Session]
) -> None:
    made = _conversation(pipeline, session_factory)
    pipeline.emu.reset_request_counts()
    _set_read(session_factory, made, T0 + timedelta(hours=1))
    with session_factory() as session, session.begin():
        key = (made["conversation"].id, made["guest"].id)
        session.delete(session.get_one(ConversationParticipant, key))
    pipeline.drain()
    assert "MarkRead" not in pipeline.counts()
    assert str(made["guest"].id) not in pipeline.emu.state()["channels"][made["cid"]]["members"]
    assert {row["status"] for row in pipeline.rows()} == {"done"}


def _new_user(session: Session) -> uuid.UUID:
    user = User(email=f"{uuid.uuid4().hex}@example.com")
    session.add(user)
    session.flush()
    return user.id


def test_a_read_of_a_message_not_in_stream_yet_goes_again_until_it_is(
    pipeline: Pipeline, session_factory: sessionmaker[Session]
) -> None:
    """The message read last is still on its way to Stream (its send failing for now):
    the read's job goes again, and marks it once it is there."""
    made = _conversation(pipeline, session_factory)
    pipeline.emu.inject_failure("SendMessage", status=500, times=2)
    with session_factory() as session, session.begin():
        late = Message(
            conversation_id=made["conversation"].id,
            sender_id=made["organizer"].id,
            content="late",
            created_at=T0 + timedelta(hours=1),
        )
        session.add(late)
    _set_read(session_factory, made, T0 + timedelta(hours=2))
    pipeline.drain()
    assert _member(pipeline, made)["last_read_message_id"] == stream_message_id(str(late.id))
    assert {row["status"] for row in pipeline.rows()} == {"done"}
    assert pipeline.emu.request_counts()["by_status"]["MarkRead 201"] == 1


def test_a_read_of_a_message_a_pending_import_brings_waits_for_the_import(
    pipeline: Pipeline, session_factory: sessionmaker[Session]
) -> None:
    """Messages at or before a pending export's watermark are the import's to bring: a
    read of one is marked once the import is complete (a row due later), not before."""
    made = _conversation(pipeline, session_factory)
    with pipeline.engine.begin() as conn:
        export = conn.execute(
            insert(audit)
            .values(
                actor="test",
                action=EXPORT_ACTION,
                detail={
                    "watermark": (T0 + timedelta(seconds=30)).isoformat(),
                    "since": T0.isoformat(),
                    "state": "exported",
                },
            )
            .returning(audit.c.id)
        ).scalar_one()
        conn.execute(update(channel_map).values(exported_in=export))
    forget_cutover()
    pipeline.emu.reset_request_counts()
    try:
        _set_read(session_factory, made, T0 + timedelta(seconds=30))  # m0: the import's
        settle(pipeline)
        assert pipeline.counts() == {}
        [recheck] = [row for row in pipeline.rows() if row["event"] == "recheck"]
        assert recheck["status"] == "pending"
        assert recheck["payload"]["reads"] == [str(made["guest"].id)]
        with pipeline.engine.begin() as conn:  # the import completes; the recheck comes due
            detail = {"imported_at": datetime.now(UTC).isoformat()}
            conn.execute(
                update(audit)
                .where(audit.c.id == export)
                .values(detail=audit.c.detail.op("||")(cast(detail, JSONB)))
            )
            conn.execute(update(outbox).values(available_at=datetime.now(UTC)))
        forget_cutover()
        settle(pipeline)
    finally:
        forget_cutover()
    first = stream_message_id(str(made["messages"][0].id))
    assert _member(pipeline, made)["last_read_message_id"] == first
    assert pipeline.emu.request_counts()["by_status"]["MarkRead 201"] == 1


def test_a_read_of_a_message_born_in_stream_marks_it_by_stream_s_own_id(
    pipeline: Pipeline, session_factory: sessionmaker[Session]
) -> None:
    """A message written in Stream (the new client) and brought home keeps Stream's id,
    which the message map records: the read names that id."""
    made = _conversation(pipeline, session_factory)
    channel_type, channel_id = made["cid"].split(":")
    client = pipeline.emu.client()
    client.channel(channel_type, channel_id).send_message(
        {"id": "born-in-stream", "text": "from the new client"}, str(made["guest"].id)
    )
    client.session.close()
    home = uuid.uuid4()
    with _message_map(pipeline) as conn:
        conn.execute(  # as the inbound side writes it: Core, no capture
            insert(Message.__table__).values(
                id=home,
                conversation_id=made["conversation"].id,
                sender_id=made["guest"].id,
                content="from the new client",
                created_at=T0 + timedelta(hours=1),
            )
        )
        conn.execute(
            text(f"INSERT INTO {MESSAGE_MAP} VALUES (:m, 'born-in-stream', 'stream', NULL, NULL)"),
            {"m": str(home)},
        )
        conn.commit()
        pipeline.emu.reset_request_counts()
        _set_read(session_factory, made, T0 + timedelta(hours=2))
        pipeline.drain()
    assert _member(pipeline, made)["last_read_message_id"] == "born-in-stream"
    assert pipeline.counts() == {"MarkRead": 1}


@contextmanager
def _message_map(pipeline: Pipeline) -> Iterator[Connection]:
    """The inbound side's message map as its contract names it, made for the test where
    the schema has none yet (and dropped after)."""
    with pipeline.engine.connect() as conn:
        made = not inspect(conn).has_table(MESSAGE_MAP)
        if made:
            conn.execute(
                text(
                    f"CREATE TABLE {MESSAGE_MAP} (message_id text PRIMARY KEY, "
                    "stream_id text UNIQUE NOT NULL, born_in text NOT NULL, "
                    "updated_at timestamptz, deleted_at timestamptz)"
                )
            )
            conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            conn.execute(
                text(f"DROP TABLE {MESSAGE_MAP}")
                if made
                else text(f"DELETE FROM {MESSAGE_MAP} WHERE stream_id = 'born-in-stream'")
            )
            conn.commit()


def test_a_read_of_a_member_stream_lost_brings_them_back_then_marks(
    pipeline: Pipeline, session_factory: sessionmaker[Session]
) -> None:
    """Stream holds the reader as no member (removed there by hand): it marks nothing (its
    answer holds no event), so the channel's members are reconciled against Stream
    itself, and the read marked then."""
    made = _conversation(pipeline, session_factory)
    channel_type, channel_id = made["cid"].split(":")
    client = pipeline.emu.client()
    client.channel(channel_type, channel_id).remove_members([str(made["guest"].id)])
    client.session.close()
    pipeline.emu.reset_request_counts()
    _set_read(session_factory, made, T0 + timedelta(hours=1))
    pipeline.drain()
    assert str(made["guest"].id) in pipeline.emu.state()["channels"][made["cid"]]["members"]
    newest = stream_message_id(str(made["messages"][-1].id))
    assert _member(pipeline, made)["last_read_message_id"] == newest
    assert pipeline.counts() == {"MarkRead": 2, "GetOrCreateChannel": 1, "UpdateChannel": 1}
    assert {row["status"] for row in pipeline.rows()} == {"done"}
