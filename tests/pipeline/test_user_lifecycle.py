"""Users leaving and coming back, as Stream treats them (the emulator applies its rules).

Deleted users are retired in batches; a user Stream deleted but the database holds is
restored; a deactivated user who comes back is reactivated; messages of a user Stream
cannot hold are sent by the system user, their sender kept; ids Stream refuses fail
their own row.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks.reference import Message, Profile, User
from stream_outbox.worker import runtime
from stream_outbox.worker.operations.resync import resync
from stream_outbox.worker.sync.bodies import SYSTEM_USER_ID
from tests.apps.shapes import BINDING, Post, ada_and_bob_in_a_thread
from tests.support.pipeline import Pipeline
from tests.support.story import invite

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def users(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = pipeline.emu.state()["users"]
    return found


def policy(pipeline: Pipeline, name: str) -> None:
    rt = runtime.current()
    rt.settings = rt.settings.model_copy(update={"deleted_user_policy": name})


def add_users(session_factory: Callable[[], Session], prefix: str, count: int) -> list[User]:
    with session_factory() as session, session.begin():
        people = [User(email=f"{prefix}{n}@example.com") for n in range(count)]
        session.add_all(people)
    return people


def delete_users(session_factory: Callable[[], Session], people: list[User]) -> None:
    with session_factory() as session, session.begin():
        for person in people:
            session.delete(session.get(User, person.id))


def test_deleted_users_are_deactivated_in_one_batch_call(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given three synced users
    people = add_users(session_factory, "u", 3)
    pipeline.drain()
    pipeline.emu.reset_request_counts()
    # When all three are deleted in the app
    delete_users(session_factory, people)
    pipeline.drain()
    # Then one batch call deactivated them all
    counts = pipeline.counts()
    assert (counts.get("DeactivateUsers"), counts.get("DeactivateUser")) == (1, None)
    held = users(pipeline)
    assert all(held[str(p.id)].get("deactivated_at") for p in people)
    assert {r["status"] for r in pipeline.rows()} == {"done"}


def test_a_batch_naming_users_stream_never_held_retires_the_others_without_one_by_one(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given three synced users, and two created then deleted before they were ever synced
    people = add_users(session_factory, "u", 3)
    pipeline.drain()
    fleeting = add_users(session_factory, "f", 2)
    delete_users(session_factory, fleeting)
    pipeline.emu.reset_request_counts()
    # When the three are deleted too, and all five go in one batch
    delete_users(session_factory, people)
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
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given a synced user, deleted in Stream (by hand, or by an earlier delete policy)
    with session_factory() as session, session.begin():
        ada = User(email="ada@example.com")
        session.add(ada)
    pipeline.drain()
    pipeline.emu.client().delete_user(str(ada.id))
    assert users(pipeline)[str(ada.id)].get("deleted_at")
    # When the app changes the user (the database still holds it)
    with session_factory() as session, session.begin():
        session.add(Profile(user_id=ada.id, full_name="Ada Lovelace"))
    pipeline.drain()
    # Then Stream restored it and holds its new name: no row failed
    held = users(pipeline)[str(ada.id)]
    assert held.get("deleted_at") is None
    assert held["name"] == "Ada Lovelace"
    assert {r["status"] for r in pipeline.rows()} == {"done"}


def guest_deleted_in_stream(pipeline: Pipeline, session_factory: Callable[[], Session]) -> str:
    """Under the delete policy, an invitation's two users synced, then the guest deleted
    in Stream (which takes it out of the channel); the guest's id."""
    policy(pipeline, "delete")
    with session_factory() as session, session.begin():
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
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given the delete policy and an invitation's two users, synced; when the guest is
    # deleted in Stream (by the policy, on a user deleted by hand in Stream here)
    guest = guest_deleted_in_stream(pipeline, session_factory)
    # and the app then touches it and resyncs
    resync(pipeline.engine, runtime.current().binding, actor="test", kinds=["user", "conversation"])
    pipeline.drain()
    # Then it is restored and back in its channel
    assert_back_in_its_channel(pipeline, guest)


# -- a soft-deleting app: messages of senders Stream cannot hold --------------------------


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
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given Stream's own limits in force (SendMessage: 1,000 a minute, 33 a second) and a
    # worker that does not pace itself, and a conversation of 80 messages
    pipeline.emu.set_stream_limits(True)
    with session_factory() as session, session.begin():
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
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given the delete policy and an invitation's two users, synced, then the guest
    # deleted in Stream (which takes it out of the channel) while the cache knows it
    guest = guest_deleted_in_stream(pipeline, session_factory)
    # When only the conversation is reconciled (its user job not run first)
    resync(pipeline.engine, runtime.current().binding, actor="test", kinds=["conversation"])
    pipeline.drain()
    # Then the add that Stream refused for the deleted member restored it and went again
    assert_back_in_its_channel(pipeline, guest)
