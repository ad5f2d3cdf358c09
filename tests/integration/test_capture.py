"""Capture writes outbox rows in the app's own transaction (real PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import channel_map, install, outbox
from stream_outbox.app_hooks.reference import (
    Conversation,
    ConversationParticipant,
    Event,
    EventProposal,
    Message,
    Profile,
    User,
)
from tests.support.story import invite


def rows(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        query = select(outbox.c.target_kind, outbox.c.target_id, outbox.c.event).order_by(
            outbox.c.id
        )
        return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]


def targets(engine: Engine) -> set[tuple[str, str]]:
    return {(kind, tid) for kind, tid, _ in rows(engine)}


def payloads(engine: Engine, kind: str, target_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        query = select(outbox.c.payload).where(
            outbox.c.target_kind == kind, outbox.c.target_id == target_id
        )
        return list(conn.scalars(query))


def test_commit_writes_rows_for_every_target(session_factory: sessionmaker[Session]) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = invite(session)
    assert targets(engine) == {
        ("user", str(made["organizer"].id)),
        ("user", str(made["guest"].id)),
        ("conversation", str(made["conversation"].id)),
    }
    assert all(event == "insert" for _, _, event in rows(engine))


def test_rollback_writes_no_row(session_factory: sessionmaker[Session]) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session:
        invite(session)
        session.rollback()
    assert rows(engine) == []


def test_rolled_back_flushes_are_forgotten_by_the_next_transaction(
    session_factory: sessionmaker[Session],
) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session:
        session.add(User(email="gone@example.com"))
        session.flush()
        session.rollback()
        kept = User(email="kept@example.com")
        session.add(kept)
        session.commit()
    assert rows(engine) == [("user", str(kept.id), "insert")]


def test_rows_and_changes_share_one_transaction(session_factory: sessionmaker[Session]) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session:
        session.add(User(email="a@example.com"))
        session.flush()
        assert rows(engine) == []  # not visible before commit
        session.commit()
    assert len(rows(engine)) == 1


def test_unrelated_column_change_writes_nothing(session_factory: sessionmaker[Session]) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = invite(session)
    before = rows(engine)
    with session_factory() as session, session.begin():
        event = session.get(Event, made["event"].id)
        assert event is not None
        event.title = "Launch"  # same value: no net change
    assert rows(engine) == before


def test_a_read_time_writes_a_read_row_naming_who_read(
    session_factory: sessionmaker[Session],
) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = invite(session)
    count = len(rows(engine))
    conversation, guest = str(made["conversation"].id), str(made["guest"].id)
    with session_factory() as session, session.begin():
        participant = session.get(
            ConversationParticipant, (made["conversation"].id, made["guest"].id)
        )
        assert participant is not None
        participant.last_read_at = made["conversation"].created_at
    assert rows(engine)[count:] == [("conversation", conversation, "read")]
    assert {"reads": [guest]} in payloads(engine, "conversation", conversation)
    with session_factory() as session, session.begin():  # cleared: nothing to send
        participant = session.get(
            ConversationParticipant, (made["conversation"].id, made["guest"].id)
        )
        assert participant is not None
        participant.last_read_at = None
    assert len(rows(engine)) == count + 1


def test_reads_and_a_membership_change_of_one_conversation_make_one_row(
    session_factory: sessionmaker[Session],
) -> None:
    """Both readers in the row, and the membership change's event: its members are
    reconciled too (a read alone leaves them be)."""
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = invite(session)
    count = len(rows(engine))
    conversation = made["conversation"].id
    with session_factory() as session, session.begin():
        for member in ("organizer", "guest"):
            participant = session.get(ConversationParticipant, (conversation, made[member].id))
            assert participant is not None
            participant.last_read_at = made["conversation"].created_at
        newcomer = User(email="new@example.com")
        session.add(newcomer)
        session.flush()
        session.add(ConversationParticipant(conversation_id=conversation, user_id=newcomer.id))
    new = [row for row in rows(engine)[count:] if row[0] == "conversation"]
    assert new == [("conversation", str(conversation), "insert")]
    readers = sorted([str(made["organizer"].id), str(made["guest"].id)])
    assert {"reads": readers} in payloads(engine, "conversation", str(conversation))


def test_profile_change_marks_its_user(session_factory: sessionmaker[Session]) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = invite(session)
    with session_factory() as session, session.begin():
        profile = session.get(Profile, made["organizer"].id)
        assert profile is not None
        profile.full_name = "Organizer"
    assert rows(engine)[-1] == ("user", str(made["organizer"].id), "update")


def test_event_title_change_marks_its_conversations(
    session_factory: sessionmaker[Session],
) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = invite(session)
    count = len(rows(engine))
    with session_factory() as session, session.begin():
        event = session.get(Event, made["event"].id)
        assert event is not None
        event.title = "Launch party"
    assert rows(engine)[count:] == [("conversation", str(made["conversation"].id), "update")]


def test_participant_leaving_through_relationship_marks_conversation(
    session_factory: sessionmaker[Session],
) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = invite(session)
    count = len(rows(engine))
    with session_factory() as session, session.begin():
        conversation = session.get(Conversation, made["conversation"].id)
        assert conversation is not None
        conversation.participants.pop()  # delete-orphan
    assert rows(engine)[count:] == [("conversation", str(made["conversation"].id), "delete")]


def test_moving_a_participant_marks_both_conversations(
    session_factory: sessionmaker[Session],
) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = invite(session)
        other = Conversation()
        session.add(other)
    count = len(rows(engine))
    with session_factory() as session, session.begin():
        proposal = EventProposal(
            event_id=made["event"].id, proposer_id=made["guest"].id, conversation_id=other.id
        )
        session.add(proposal)
        session.flush()
        proposal.conversation_id = made["conversation"].id
    # One row per target and transaction: the proposal's insert and move coalesce.
    assert set(rows(engine)[count:]) == {
        ("conversation", str(other.id), "insert"),
        ("conversation", str(made["conversation"].id), "update"),
    }


def test_message_row_carries_its_conversation(session_factory: sessionmaker[Session]) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = invite(session)
        message = Message(
            conversation_id=made["conversation"].id, sender_id=made["guest"].id, content="hi"
        )
        session.add(message)
    assert payloads(engine, "message", str(message.id)) == [
        {"conversation_id": str(made["conversation"].id)}
    ]


def test_deleted_conversation_row_carries_its_mapped_channel(
    session_factory: sessionmaker[Session],
) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = invite(session)
    cid = str(made["conversation"].id)
    with engine.begin() as conn:
        conn.execute(
            insert(channel_map).values(
                conversation_id=cid, channel_type="messaging", channel_id="invitation_x"
            )
        )
    with session_factory() as session, session.begin():
        session.delete(session.get(Conversation, made["conversation"].id))
    assert ("conversation", cid, "delete") in rows(engine)
    assert payloads(engine, "conversation", cid)[-1] == {
        "channel_type": "messaging",
        "channel_id": "invitation_x",
    }


def test_deleted_unmapped_conversation_row_predicts_its_channel(
    session_factory: sessionmaker[Session],
) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = invite(session)
    cid = str(made["conversation"].id)
    with session_factory() as session, session.begin():
        session.execute(delete(Conversation).where(Conversation.id == made["conversation"].id))
    assert payloads(engine, "conversation", cid)[-1] == {
        "channel_type": "messaging",
        "channel_id": f"invitation_{made['invitation'].id}",
        "predicted": True,
    }


def test_bulk_update_writes_rows_for_changed_targets(
    session_factory: sessionmaker[Session],
) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = invite(session)
    count = len(rows(engine))
    with session_factory() as session, session.begin():
        session.execute(
            update(User).where(User.email.like("%@example.com")).values(email=User.email + ".org")
        )
        # An update that changes nothing watched writes nothing.
        session.execute(update(ConversationParticipant).values(last_read_at=None))
    assert set(rows(engine)[count:]) == {
        ("user", str(made["organizer"].id), "update"),
        ("user", str(made["guest"].id), "update"),
    }


def test_bulk_delete_of_user_marks_user_and_conversations(
    session_factory: sessionmaker[Session],
) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = invite(session)
    count = len(rows(engine))
    with session_factory() as session, session.begin():
        session.execute(delete(User).where(User.id == made["guest"].id))
    assert set(rows(engine)[count:]) == {
        ("user", str(made["guest"].id), "delete"),
        ("conversation", str(made["conversation"].id), "update"),
    }


def test_orm_delete_of_user_marks_conversations_cascaded_in_the_database(
    session_factory: sessionmaker[Session],
) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = invite(session)
    count = len(rows(engine))
    with session_factory() as session, session.begin():
        session.delete(session.get(User, made["guest"].id))
    assert set(rows(engine)[count:]) == {
        ("user", str(made["guest"].id), "delete"),
        ("conversation", str(made["conversation"].id), "update"),
    }


@pytest.mark.parametrize("who", ["organizer", "proposer"])
def test_deleting_a_user_marks_conversations_of_what_cascades_with_them(
    session_factory: sessionmaker[Session], who: str
) -> None:
    # Given an invitation conversation and a proposal conversation, neither with the
    # organizer or the proposer as a participant
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = invite(session)
        proposer = User(email="pro@example.com")
        elsewhere = Conversation()
        session.add_all([proposer, elsewhere])
        session.flush()
        session.add(
            EventProposal(
                event_id=made["event"].id, proposer_id=proposer.id, conversation_id=elsewhere.id
            )
        )
        session.execute(
            delete(ConversationParticipant).where(
                ConversationParticipant.user_id == made["organizer"].id
            )
        )
    count = len(rows(engine))
    # When the user is deleted (the database cascades to their events and proposals)
    gone = made["organizer"].id if who == "organizer" else proposer.id
    with session_factory() as session, session.begin():
        session.delete(session.get(User, gone))
    # Then the conversations whose channels lose their event are marked
    marked = {target for target in rows(engine)[count:] if target[0] == "conversation"}
    expected = {str(elsewhere.id)}
    if who == "organizer":  # the event goes, and the invitation with it
        expected.add(str(made["conversation"].id))
    assert marked == {("conversation", cid, "update") for cid in expected}


def test_sessions_of_other_factories_write_nothing(clean_db: Engine) -> None:
    plain = sessionmaker(clean_db)
    with plain() as session, session.begin():
        session.add(User(email="plain@example.com"))
    assert rows(clean_db) == []


def test_install_twice_writes_rows_once(clean_db: Engine) -> None:
    factory = sessionmaker(clean_db)
    install(factory)
    install(factory)
    with factory() as session, session.begin():
        session.add(User(email="once@example.com"))
    assert len(rows(clean_db)) == 1


def test_install_on_a_session_subclass(clean_db: Engine) -> None:
    class AppSession(Session):
        pass

    install(AppSession)
    with AppSession(clean_db) as session, session.begin():
        session.add(User(email="sub@example.com"))
    assert len(rows(clean_db)) == 1


@pytest.mark.parametrize("flushes", [1, 3])
def test_changes_to_one_target_in_one_transaction_make_one_row(
    session_factory: sessionmaker[Session], flushes: int
) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        user = User(email="u@example.com", profile=Profile(full_name="U"))
        session.add(user)
        for n in range(flushes - 1):
            session.flush()
            user.email = f"u{n}@example.com"
    assert rows(engine) == [("user", str(user.id), "insert")]


def test_rolled_back_savepoint_drops_its_rows_only(session_factory: sessionmaker[Session]) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        kept = User(email="kept@example.com")
        session.add(kept)
        session.flush()
        savepoint = session.begin_nested()
        session.add(User(email="dropped@example.com"))
        session.flush()
        savepoint.rollback()
        with session.begin_nested():
            inner = User(email="inner@example.com")
            session.add(inner)
    assert targets(engine) == {("user", str(kept.id)), ("user", str(inner.id))}


def test_changes_made_by_a_before_commit_listener_are_captured(clean_db: Engine) -> None:
    from sqlalchemy import event

    factory = sessionmaker(clean_db, expire_on_commit=False)
    install(factory)
    late: list[User] = []

    def add_late_user(session: Session) -> None:
        if not late:
            late.append(User(email="late@example.com"))
            session.add(late[0])

    event.listen(factory, "before_commit", add_late_user)
    with factory() as session, session.begin():
        session.add(User(email="first@example.com"))
    assert ("user", str(late[0].id)) in targets(clean_db)
    assert len(rows(clean_db)) == 2


def test_a_failed_commit_leaves_no_row(session_factory: sessionmaker[Session]) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        session.add(User(email="taken@example.com"))
    count = len(rows(engine))
    with pytest.raises(Exception, match="unique"), session_factory() as session:
        session.add(User(email="ok@example.com"))
        session.flush()
        session.add(User(email="taken@example.com"))
        session.commit()
    with session_factory() as session, session.begin():
        session.add(User(email="after@example.com"))
    assert len(rows(engine)) == count + 1


def test_a_bulk_update_of_read_times_writes_read_rows(
    session_factory: sessionmaker[Session],
) -> None:
    engine = session_factory.kw["bind"]
    with session_factory() as session, session.begin():
        made = invite(session)
    count = len(rows(engine))
    conversation = str(made["conversation"].id)
    with session_factory() as session, session.begin():
        session.execute(
            update(ConversationParticipant).values(last_read_at=made["conversation"].created_at)
        )
    assert rows(engine)[count:] == [("conversation", conversation, "read")]
    readers = sorted([str(made["organizer"].id), str(made["guest"].id)])
    assert {"reads": readers} in payloads(engine, "conversation", conversation)
