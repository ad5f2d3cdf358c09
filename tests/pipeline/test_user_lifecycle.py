"""Users leaving and coming back, as Stream treats them (the emulator applies its rules).

Deleted users are retired in batches; a user Stream deleted but the database holds is
restored; a deactivated user who comes back is reactivated; messages of a user Stream
cannot hold are sent by the system user, their sender kept; ids Stream refuses fail
their own row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import install
from stream_outbox.app_hooks.reference import Message, Profile, User
from stream_outbox.worker import runtime
from stream_outbox.worker.operations.resync import resync
from stream_outbox.worker.sync.bodies import SYSTEM_USER_ID
from tests.pipeline.conftest import Pipeline
from tests.shapes_app import BINDING, Base, Post, ada_and_bob_in_a_thread
from tests.story import invite

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def users(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = pipeline.emu.state()["users"]
    return found


def policy(pipeline: Pipeline, name: str) -> None:
    rt = runtime.current()
    rt.settings = rt.settings.model_copy(update={"deleted_user_policy": name})


def add_users(app_session: Callable[[], Session], prefix: str, count: int) -> list[User]:
    with app_session() as session, session.begin():
        people = [User(email=f"{prefix}{n}@example.com") for n in range(count)]
        session.add_all(people)
    return people


def delete_users(app_session: Callable[[], Session], people: list[User]) -> None:
    with app_session() as session, session.begin():
        for person in people:
            session.delete(session.get(User, person.id))


def test_deleted_users_are_deactivated_in_one_batch_call(
    pipeline: Pipeline, app_session: Callable[[], Session]
) -> None:
    # Given three synced users
    people = add_users(app_session, "u", 3)
    pipeline.drain()
    pipeline.emu.reset_request_counts()
    # When all three are deleted in the app
    delete_users(app_session, people)
    pipeline.drain()
    # Then one batch call deactivated them all
    counts = pipeline.counts()
    assert (counts.get("DeactivateUsers"), counts.get("DeactivateUser")) == (1, None)
    held = users(pipeline)
    assert all(held[str(p.id)].get("deactivated_at") for p in people)
    assert {r["status"] for r in pipeline.rows()} == {"done"}


def test_a_batch_naming_users_stream_never_held_retires_the_others_without_one_by_one(
    pipeline: Pipeline, app_session: Callable[[], Session]
) -> None:
    # Given three synced users, and two created then deleted before they were ever synced
    people = add_users(app_session, "u", 3)
    pipeline.drain()
    fleeting = add_users(app_session, "f", 2)
    delete_users(app_session, fleeting)
    pipeline.emu.reset_request_counts()
    # When the three are deleted too, and all five go in one batch
    delete_users(app_session, people)
    pipeline.drain()
    # Then the batch Stream refuses (two unknown users) goes again with the three it holds:
    # no call one user at a time (60 a minute)
    counts = pipeline.counts()
    assert counts.get("DeactivateUser") is None, counts
    assert (counts.get("DeactivateUsers"), counts.get("QueryUsers")) == (2, 1), counts
    held = users(pipeline)
    assert all(held[str(p.id)].get("deactivated_at") for p in people)
    assert not any(str(p.id) in held for p in fleeting)
    assert {r["status"] for r in pipeline.rows()} == {"done"}


def test_a_user_stream_deleted_but_the_database_holds_is_restored(
    pipeline: Pipeline, app_session: Callable[[], Session]
) -> None:
    # Given a synced user, deleted in Stream (by hand, or by an earlier delete policy)
    with app_session() as session, session.begin():
        ada = User(email="ada@example.com")
        session.add(ada)
    pipeline.drain()
    pipeline.emu.client().delete_user(str(ada.id))
    assert users(pipeline)[str(ada.id)].get("deleted_at")
    # When the app changes the user (the database still holds it)
    with app_session() as session, session.begin():
        session.add(Profile(user_id=ada.id, full_name="Ada Lovelace"))
    pipeline.drain()
    # Then Stream restored it and holds its new name: no row failed
    held = users(pipeline)[str(ada.id)]
    assert held.get("deleted_at") is None
    assert held["name"] == "Ada Lovelace"
    assert {r["status"] for r in pipeline.rows()} == {"done"}


def guest_deleted_in_stream(pipeline: Pipeline, app_session: Callable[[], Session]) -> str:
    """Under the delete policy, an invitation's two users synced, then the guest deleted
    in Stream (which takes it out of the channel); the guest's id."""
    policy(pipeline, "delete")
    with app_session() as session, session.begin():
        made = invite(session)
    pipeline.drain()
    guest = str(made["guest"].id)
    pipeline.emu.client().delete_users([guest], "soft")
    return guest


def assert_back_in_its_channel(pipeline: Pipeline, guest: str) -> None:
    """The guest restored in Stream and a member of the channel again; every row done."""
    assert users(pipeline)[guest].get("deleted_at") is None
    [channel] = pipeline.emu.state()["channels"].values()
    assert guest in channel["members"]
    assert {row["status"] for row in pipeline.rows()} == {"done"}


def test_under_the_delete_policy_a_user_back_in_the_database_is_back_in_stream(
    pipeline: Pipeline, app_session: Callable[[], Session]
) -> None:
    # Given the delete policy and an invitation's two users, synced; when the guest is
    # deleted in Stream (by the policy, on a user deleted by hand in Stream here)
    guest = guest_deleted_in_stream(pipeline, app_session)
    # and the app then touches it and resyncs
    resync(pipeline.engine, runtime.current().binding, actor="test", kinds=["user", "conversation"])
    pipeline.drain()
    # Then it is restored and back in its channel
    assert_back_in_its_channel(pipeline, guest)


# -- a soft-deleting app: messages of senders Stream cannot hold --------------------------


@pytest.fixture()
def shapes(pipeline: Pipeline, clean_db: Engine) -> Iterator[sessionmaker[Session]]:
    """The shapes app's tables, captured, and the worker's runtime on its binding."""
    Base.metadata.create_all(clean_db)
    old = runtime.current()
    own = runtime.Runtime.from_settings(pipeline.settings, binding=BINDING)
    runtime.install(own)
    factory = sessionmaker(clean_db, expire_on_commit=False)
    install(factory, BINDING)
    try:
        yield factory
    finally:
        runtime.install(old)
        own.engine.dispose()
        own.redis.close()
        names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with clean_db.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {names} CASCADE"))


def test_messages_of_a_deleted_sender_are_sent_by_the_system_user(
    pipeline: Pipeline, shapes: sessionmaker[Session]
) -> None:
    # Given a thread whose history has posts by an account deleted (soft) since
    with shapes.begin() as session:
        ada, bob, thread = ada_and_bob_in_a_thread(session)
        session.add(Post(key="p-1", thread_id=thread.id, author_id=bob.id, body="from bob"))
        session.add(Post(key="p-2", thread_id=thread.id, author_id=ada.id, body="from ada"))
        session.flush()
        bob.deleted_at = NOW
    pipeline.drain()
    # When the thread is backfilled with its history
    resync(
        pipeline.engine,
        BINDING,
        actor="test",
        kinds=["conversation"],
        event="backfill",
        payload={"legacy": True, "history": True},
    )
    pipeline.drain()
    # Then both posts are in Stream: the deleted sender's by the system user, its sender kept
    state = pipeline.emu.state()
    [cid] = state["channels"]
    by_id = {m["id"]: m for m in state["messages"][cid]}
    assert by_id["msg-p-1"]["user_id"] == SYSTEM_USER_ID
    assert by_id["msg-p-1"]["original_user_id"] == str(bob.id)
    assert by_id["msg-p-2"]["user_id"] == str(ada.id)
    assert "original_user_id" not in by_id["msg-p-2"]
    assert {r["status"] for r in pipeline.rows()} == {"done"}


# -- Stream's per-second limit -----------------------------------------------------------


def test_a_history_over_stream_s_per_second_limit_resumes_where_a_429_stopped_it(
    pipeline: Pipeline, app_session: Callable[[], Session]
) -> None:
    # Given Stream's own limits in force (SendMessage: 1,000 a minute, 33 a second) and a
    # worker that does not pace itself, and a conversation of 80 messages
    pipeline.emu.set_stream_limits(True)
    with app_session() as session, session.begin():
        made = invite(session)
    pipeline.drain()
    conversation = made["conversation"].id
    with pipeline.engine.begin() as conn:
        conn.execute(
            insert(Message),
            [
                {
                    "conversation_id": conversation,
                    "content": f"old {n}",
                    "created_at": datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=n),
                }
                for n in range(80)
            ],
        )
    pipeline.emu.reset_request_counts()
    # When its history is imported
    resync(
        pipeline.engine,
        runtime.current().binding,
        actor="test",
        kinds=["conversation"],
        event="backfill",
        payload={"history": True},
    )
    pipeline.drain(timeout=60)
    # Then every message is in Stream once, and none was sent twice: each 429 resumed the
    # import after the last message sent
    by_status = pipeline.emu.request_counts()["by_status"]
    assert by_status.get("SendMessage 429", 0) >= 1  # the limit was met
    assert by_status.get("SendMessage 400", 0) == 0  # no "already exists"
    cid = f"messaging:invitation_{made['invitation'].id}"
    assert len(pipeline.emu.state()["messages"][cid]) == 80
    assert {r["status"] for r in pipeline.rows()} == {"done"}


def test_a_conversation_reconciled_before_its_deleted_member_s_user_job_restores_it(
    pipeline: Pipeline, app_session: Callable[[], Session]
) -> None:
    # Given the delete policy and an invitation's two users, synced, then the guest
    # deleted in Stream (which takes it out of the channel) while the cache knows it
    guest = guest_deleted_in_stream(pipeline, app_session)
    # When only the conversation is reconciled (its user job not run first)
    resync(pipeline.engine, runtime.current().binding, actor="test", kinds=["conversation"])
    pipeline.drain()
    # Then the add that Stream refused for the deleted member restored it and went again
    assert_back_in_its_channel(pipeline, guest)
