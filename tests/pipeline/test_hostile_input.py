"""Hostile and bad input: each is a clear error on its own row or a correct sync, never a
crash loop, never another target held up.

What each case gets:

* emoji, right-to-left text, combining marks, markup in names and emails: synced as written;
* a NUL byte (PostgreSQL refuses it in text) or a value longer than its column: the
  app's own commit fails, and no outbox row is written;
* a 10,000-character name in an app whose columns allow it: synced as written; a
  10,000-character message: Stream refuses it (over 5,000), the message's row fails with
  Stream's error, the rest syncs;
* ids that break Stream's rules (an app with text ids): a user id with a space fails that
  user's rows, and the rows of channels it is a member of, naming the id; a channel id
  over 64 characters fails that conversation's rows; everything else syncs;
* a profile of a missing user: the foreign key refuses it;
* a row edited by hand: a payload that is not a JSON object fails that row alone with a
  clear error; a wrong target kind is refused by the CHECK constraint; an unknown target
  id is a target with nothing to hold (done), or, when Stream could not even name it, a
  failed row of its own;
* a channel of 2,500 members: created with 100, the rest added 100 per call, and 250
  removed 100 per call;
* concurrent app transactions on one conversation: converge.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, insert, select, text, update
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import install, outbox
from stream_outbox.app_hooks.reference import (
    REFERENCE_BINDING,
    Conversation,
    ConversationParticipant,
    Event,
    EventParticipant,
    Message,
    Profile,
    User,
)
from stream_outbox.worker.verify.compare import compare
from stream_outbox.worker.verify.readers import held_from_snapshot, read_desired
from tests.apps.string_ids import (
    STRING_ID_BINDING,
    SConversation,
    SMessage,
    SParticipant,
    SProfile,
    StringIdBase,
    SUser,
)
from tests.support.app_model import NAMES
from tests.support.pipeline import Pipeline
from tests.support.story import invite

LONG = "ü" * 10_000
LONG_NAME = "ü" * 2_000  # 4,000 bytes: long, within Stream's 5 KB of user data


def by_target(pipeline: Pipeline) -> dict[tuple[str, str], list[dict[str, Any]]]:
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in pipeline.rows():
        found.setdefault((row["target_kind"], row["target_id"]), []).append(row)
    return found


def statuses(rows: list[dict[str, Any]]) -> set[str]:
    return {row["status"] for row in rows}


def in_step(pipeline: Pipeline, gone: list[str] = ()) -> list[str]:  # type: ignore[assignment]
    desired = read_desired(pipeline.engine, REFERENCE_BINDING, pipeline.repo, gone=gone)
    return [str(d) for d in compare(desired=desired, held=held_from_snapshot(pipeline.emu.state()))]


def outbox_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(outbox)) or 0)


# -- names and text ----------------------------------------------------------------------


def test_unicode_names_and_emails_sync_as_written(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    names = [name for name in NAMES if name]
    emails = ["zoë@exämple.com", "משה@example.com", "🦄@example.com", "o'brien+<x>@example.com"]
    with session_factory() as session, session.begin():
        users = [
            User(email=f"u{n}@example.com", profile=Profile(full_name=name))
            for n, name in enumerate(names)
        ]
        users += [User(email=email) for email in emails]
        session.add_all(users)
        session.flush()
        conversation = Conversation()
        session.add(conversation)
        session.flush()
        session.add_all(
            ConversationParticipant(conversation_id=conversation.id, user_id=user.id)
            for user in users
        )
    pipeline.drain()
    held = pipeline.emu.state()["users"]
    assert [held[str(user.id)]["name"] for user in users] == [*names, *emails]
    assert statuses(pipeline.rows()) == {"done"}
    assert in_step(pipeline) == []


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: User(email="nul\x00@example.com"), id="email"),
        pytest.param(
            lambda: User(email="a@example.com", profile=Profile(full_name="a\x00b")),
            id="full_name",
        ),
        pytest.param(lambda: User(email=LONG), id="email-10000-chars"),
        pytest.param(
            lambda: User(email="b@example.com", profile=Profile(full_name=LONG)),
            id="full_name-10000-chars",
        ),
    ],
)
def test_text_the_database_refuses_fails_the_apps_commit_and_writes_no_row(
    pipeline: Pipeline, session_factory: Callable[[], Session], make: Callable[[], User]
) -> None:
    with pytest.raises(DataError), session_factory() as session, session.begin():
        session.add(make())
    assert outbox_count(pipeline.engine) == 0
    with pipeline.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(User)) == 0


def test_a_nul_byte_in_a_message_fails_the_apps_commit_and_writes_no_row(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session, session.begin():
        made = invite(session)
    before = outbox_count(pipeline.engine)
    with pytest.raises(DataError), session_factory() as session, session.begin():
        session.add(Message(conversation_id=made["conversation"].id, content="a\x00b"))
    assert outbox_count(pipeline.engine) == before


def test_a_message_stream_refuses_as_too_long_fails_alone(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session, session.begin():
        made = invite(session)
        guest = made["guest"].id
        session.add(Message(conversation_id=made["conversation"].id, sender_id=guest, content="ok"))
        long_one = Message(conversation_id=made["conversation"].id, sender_id=guest, content=LONG)
        session.add(long_one)
    pipeline.drain()
    rows = by_target(pipeline)
    failed = rows.pop(("message", str(long_one.id)))
    assert statuses(failed) == {"failed"}
    assert "SendMessage HTTP 400 code 20" in failed[0]["last_error"]
    assert "too long" in failed[0]["last_error"]
    assert all(statuses(group) == {"done"} for group in rows.values())
    cid = f"messaging:invitation_{made['invitation'].id}"
    assert len(pipeline.emu.state()["messages"][cid]) == 1


def test_a_profile_of_a_missing_user_is_refused_by_the_foreign_key(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    with pytest.raises(IntegrityError), session_factory() as session, session.begin():
        session.add(Profile(user_id=uuid.uuid4(), full_name="Nobody"))
    assert outbox_count(pipeline.engine) == 0


# -- an application with text ids -----------------------------------------------------------


@pytest.fixture()
def string_id_app(pipeline: Pipeline) -> Iterator[sessionmaker[Session]]:
    """The text-id app's tables, capture installed, and a worker runtime with its binding."""
    StringIdBase.metadata.create_all(pipeline.engine)
    factory = sessionmaker(pipeline.engine, expire_on_commit=False)
    install(factory, STRING_ID_BINDING)
    try:
        with pipeline.bound_to(STRING_ID_BINDING):
            yield factory
    finally:
        StringIdBase.metadata.drop_all(pipeline.engine)


def _conversation(session: Session, conversation_id: str, *members: str) -> None:
    session.add(SConversation(id=conversation_id))
    session.flush()
    session.add_all(SParticipant(conversation_id=conversation_id, user_id=m) for m in members)


def test_ids_that_break_streams_rules_fail_their_own_rows_only(
    pipeline: Pipeline, string_id_app: sessionmaker[Session]
) -> None:
    long_id = "c" * 80  # conversation_ + 80 characters: over Stream's 64
    with string_id_app() as session, session.begin():
        session.add_all(
            [
                SUser(id="ann", email="ann@example.com"),
                SUser(id="bob", email="bob@example.com"),
                SUser(id="cy", email="cy@example.com"),
                SUser(id="john smith", email="john@example.com"),
            ]
        )
        session.flush()
        session.add(SProfile(user_id="ann", full_name=LONG_NAME))  # no limit in this app
        _conversation(session, "group-1", "ann", "bob", "cy")
        _conversation(session, long_id, "ann", "bob", "cy")
        _conversation(session, "with-john", "ann", "bob", "john smith")
        _conversation(session, "d" * 80, "ann", "bob")  # two people: a hashed dm_ id
        session.add(
            SMessage(id="m" * 200, conversation_id="group-1", sender_id="bob", content="hi")
        )
    pipeline.drain()
    rows = by_target(pipeline)
    john = rows.pop(("user", "john smith"))
    assert statuses(john) == {"failed"}
    assert "user id 'john smith' may only contain" in john[0]["last_error"]
    too_long = rows.pop(("conversation", long_id))
    assert statuses(too_long) == {"failed"}
    assert "must be 1 to 64 characters" in too_long[0]["last_error"]
    with_john = rows.pop(("conversation", "with-john"))
    assert statuses(with_john) == {"failed"}
    assert "'john smith'" in with_john[0]["last_error"]
    assert all(statuses(group) == {"done"} for group in rows.values()), [
        (k, r["status"], r["last_error"])
        for k, g in rows.items()
        for r in g
        if r["status"] != "done"
    ]
    state = pipeline.emu.state()
    assert state["users"]["ann"]["name"] == LONG_NAME
    assert set(state["users"]) == {"ann", "bob", "cy"}
    assert state["channels"]["messaging:conversation_group-1"]["members"] == ["ann", "bob", "cy"]
    assert sum(1 for cid in state["channels"] if cid.startswith("messaging:dm_")) == 1
    assert len(state["messages"]["messaging:conversation_group-1"]) == 1


def test_a_deleted_user_whose_id_stream_refuses_fails_alone(
    pipeline: Pipeline, string_id_app: sessionmaker[Session]
) -> None:
    with string_id_app() as session, session.begin():
        session.add_all([SUser(id="ann", email="a@example.com"), SUser(id="x y", email="x@y")])
    pipeline.drain()
    assert statuses(by_target(pipeline)[("user", "x y")]) == {"failed"}  # never upserted
    with string_id_app() as session, session.begin():
        session.delete(session.get(SUser, "x y"))
        session.add(SProfile(user_id="ann", full_name="Ann"))
    pipeline.drain()
    rows = by_target(pipeline)
    assert statuses(rows.pop(("user", "x y"))) == {"failed"}
    ann = rows.pop(("user", "ann"))
    assert statuses(ann) == {"done"}, [(r["status"], r["last_error"]) for r in ann]
    assert pipeline.emu.state()["users"]["ann"]["name"] == "Ann"


# -- rows edited by hand -----------------------------------------------------------------------


def test_a_payload_edited_into_garbage_fails_that_row_alone(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session, session.begin():
        made = invite(session)
    conversation_id = str(made["conversation"].id)
    with pipeline.engine.begin() as conn:
        conn.execute(
            text("UPDATE stream_outbox SET payload = '\"garbage\"' WHERE target_kind = 'user'")
        )
    pipeline.drain()
    rows = pipeline.rows()
    garbage = [row for row in rows if row["target_kind"] == "user"]
    assert statuses(garbage) == {"failed"}
    assert all("payload is not a JSON object" in row["last_error"] for row in garbage)
    assert statuses([row for row in rows if row["target_kind"] == "conversation"]) == {"done"}
    # the channel's reconcile upserted its members itself: Stream is in step all the same
    assert in_step(pipeline, gone=[conversation_id]) == []


def test_a_wrong_target_kind_is_refused_by_the_check_constraint(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session, session.begin():
        invite(session)
    with pytest.raises(IntegrityError), pipeline.engine.begin() as conn:
        conn.execute(update(outbox).values(target_kind="channel"))


def test_unknown_target_ids_hold_up_nothing(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    rows = [
        ("user", "not-a-uuid"),  # no such user: Stream must not hold one (done)
        ("user", str(uuid.uuid4())),  # the same with a well-formed id
        ("user", "bad id!"),  # not even a Stream user id: its row fails
        ("conversation", "nope"),
        ("conversation", str(uuid.uuid4())),
        ("message", "nope"),
    ]
    with pipeline.engine.begin() as conn:
        conn.execute(
            insert(outbox),
            [{"target_kind": k, "target_id": i, "event": "hand", "payload": {}} for k, i in rows],
        )
    with session_factory() as session, session.begin():
        made = invite(session)
    pipeline.drain()
    found = by_target(pipeline)
    bad = found.pop(("user", "bad id!"))
    assert statuses(bad) == {"failed"}
    assert "user id 'bad id!' may only contain" in bad[0]["last_error"]
    assert all(statuses(group) == {"done"} for group in found.values()), found
    assert all(row["attempts"] == 1 for group in found.values() for row in group)
    assert str(made["guest"].id) in pipeline.emu.state()["users"]
    assert in_step(pipeline) == []


# -- big and busy --------------------------------------------------------------------------------


def test_a_channel_of_2500_members_is_made_100_at_a_time(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session, session.begin():
        users = [User(id=uuid.uuid4(), email=f"m{n}@example.com") for n in range(2500)]
        conversation = Conversation(id=uuid.uuid4())
        session.add_all([*users, conversation])
        session.flush()
        session.add_all(
            ConversationParticipant(conversation_id=conversation.id, user_id=user.id)
            for user in users
        )
    pipeline.drain(timeout=60)
    counts = pipeline.emu.request_counts()["by_status"]
    assert counts["GetOrCreateChannel 201"] == 1
    assert counts["UpdateChannel 201"] == 24  # 2,400 added after the first 100
    cid = f"messaging:conversation_{conversation.id}"
    assert len(pipeline.emu.state()["channels"][cid]["members"]) == 2500
    with session_factory() as session, session.begin():
        leaving = [user.id for user in users[:250]]
        part = ConversationParticipant
        session.execute(delete(part).where(part.user_id.in_(leaving)))
    pipeline.emu.reset_request_counts()
    pipeline.drain(timeout=60)
    assert pipeline.emu.request_counts()["by_status"]["UpdateChannel 201"] == 3  # 100+100+50
    assert len(pipeline.emu.state()["channels"][cid]["members"]) == 2250
    assert statuses(pipeline.rows()) == {"done"}
    assert in_step(pipeline) == []


def test_concurrent_transactions_on_one_conversation_converge(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session, session.begin():
        made = invite(session)
    conversation_id, event_id = made["conversation"].id, made["event"].id
    pipeline.drain()
    errors: list[BaseException] = []

    def member(n: int) -> None:
        try:
            for step in range(8):
                with session_factory() as session, session.begin():
                    user = User(email=f"t{n}-{step}@example.com")
                    session.add(user)
                    session.flush()
                    session.add(
                        ConversationParticipant(conversation_id=conversation_id, user_id=user.id)
                    )
                    if step % 3 == 2:  # someone who joined earlier leaves
                        part = ConversationParticipant
                        session.execute(
                            delete(part).where(
                                part.conversation_id == conversation_id,
                                part.user_id
                                == select(User.id)
                                .where(User.email == f"t{n}-{step - 1}@example.com")
                                .scalar_subquery(),
                            )
                        )
                    event = session.get(Event, event_id, with_for_update=True)
                    assert event is not None
                    event.title = f"Launch {n}.{step}"
                pipeline.relay.run_once()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=member, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    pipeline.drain()
    cid = f"messaging:invitation_{made['invitation'].id}"
    channel = pipeline.emu.state()["channels"][cid]
    assert len(channel["members"]) == 2 + 6 * 8 - 6 * 2
    assert statuses(pipeline.rows()) == {"done"}
    assert in_step(pipeline) == []
    with pipeline.engine.connect() as conn:
        invitation = conn.scalar(select(EventParticipant.id))
    assert f"messaging:invitation_{invitation}" == cid


def test_a_message_id_stream_refuses_fails_its_own_row(
    pipeline: Pipeline, string_id_app: sessionmaker[Session]
) -> None:
    # Given a conversation with two messages, one under an id Stream refuses (a ',')
    with string_id_app() as session, session.begin():
        session.add_all([SUser(id=u, email=f"{u}@example.com") for u in ("ann", "bob")])
        session.flush()
        _conversation(session, "talk", "ann", "bob")
        session.add(SMessage(id="m,1", conversation_id="talk", sender_id="ann", content="x"))
        session.add(SMessage(id="m-2", conversation_id="talk", sender_id="bob", content="y"))
    pipeline.drain()
    # Then the refused message's row fails at once, naming the id and the rule
    rows = by_target(pipeline)
    refused = rows.pop(("message", "m,1"))
    assert [(r["status"], r["attempts"]) for r in refused] == [("failed", 1)]
    assert "message id 'msg-m,1' may not contain ',' or '%'" in refused[0]["last_error"]
    # and every other row is done, the other message in Stream
    assert all(statuses(found) == {"done"} for found in rows.values())
    state = pipeline.emu.state()
    [cid] = state["channels"]
    assert [m["id"] for m in state["messages"][cid]] == ["msg-m-2"]


def test_a_user_over_stream_s_5_kb_fails_alone_with_its_size(
    pipeline: Pipeline, string_id_app: sessionmaker[Session]
) -> None:
    # Given a user whose name (no limit in this app) is 20,000 bytes, in one of two
    # conversations
    with string_id_app() as session, session.begin():
        session.add_all([SUser(id=u, email=f"{u}@example.com") for u in ("ann", "bob", "cy")])
        session.flush()
        session.add(SProfile(user_id="ann", full_name=LONG))
        _conversation(session, "with-ann", "ann", "bob")
        _conversation(session, "without-ann", "bob", "cy")
    pipeline.drain()
    # Then the user's row fails at once, before any call, naming its size
    rows = by_target(pipeline)
    ann = rows.pop(("user", "ann"))
    assert [(r["status"], r["attempts"]) for r in ann] == [("failed", 1)]
    assert "user ann: 20" in ann[0]["last_error"]
    assert "Stream takes at most 5120 (5 KB)" in ann[0]["last_error"]
    # and so does the conversation it would be a member of; nothing else does
    with_ann = rows.pop(("conversation", "with-ann"))
    assert statuses(with_ann) == {"failed"}
    assert "user ann:" in with_ann[0]["last_error"]
    assert all(statuses(group) == {"done"} for group in rows.values())
    assert set(pipeline.emu.state()["users"]) == {"bob", "cy"}
