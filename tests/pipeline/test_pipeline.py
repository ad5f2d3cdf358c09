"""The relay and the actors converge Stream on the database (PostgreSQL, Redis, emulator)."""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy.orm import Session

from stream_outbox.app_hooks.reference import (
    Conversation,
    ConversationParticipant,
    Event,
    Profile,
    User,
)
from tests.support.pipeline import Pipeline
from tests.support.story import invite


def test_an_invitation_reaches_stream(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session, session.begin():
        made = invite(session)
    pipeline.drain()
    state = pipeline.emu.state()
    organizer, guest = str(made["organizer"].id), str(made["guest"].id)
    assert state["users"][organizer]["name"] == "Olga Organizer"
    assert state["users"][guest]["name"] == "guest@example.com"
    cid = f"messaging:invitation_{made['invitation'].id}"
    channel = state["channels"][cid]
    assert sorted(channel["members"]) == sorted([organizer, guest])
    assert channel["data"]["name"] == "Launch"
    assert channel["created_by"] == organizer
    assert {row["status"] for row in pipeline.rows()} == {"done"}


def test_a_burst_to_one_conversation_costs_one_reconcile(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session, session.begin():
        made = invite(session)
    pipeline.drain()
    pipeline.emu.reset_request_counts()
    conversation_id = made["conversation"].id
    extra = []
    for n in range(15):  # fifteen transactions, each adding a member
        with session_factory() as session, session.begin():
            user = User(email=f"u{n}@example.com")
            session.add(user)
            session.flush()
            session.add(ConversationParticipant(conversation_id=conversation_id, user_id=user.id))
            extra.append(str(user.id))
    pipeline.drain()
    counts = pipeline.counts()
    # one reconcile for fifteen rows: fifteen members added in one call, with no read
    # (planned against Stream's answer when the channel was created)
    assert counts.get("GetOrCreateChannel", 0) == 0
    assert counts.get("UpdateChannel") == 1
    # the users' batch job, and the channel's own upsert of members not yet known
    # to be in Stream when it ran first: at most two calls for fifteen users
    assert counts.get("UpdateUsers", 0) <= 2
    channel = pipeline.emu.state()["channels"][f"messaging:invitation_{made['invitation'].id}"]
    assert set(extra) <= set(channel["members"])
    assert len(channel["members"]) == 17


def _leave_and_join(
    session_factory: Callable[[], Session], made: dict[str, Any], user: Any
) -> None:
    """The guest leaves and ``user`` joins, in one transaction."""
    with session_factory() as session, session.begin():
        conversation_id = made["conversation"].id
        session.delete(
            session.get_one(ConversationParticipant, (conversation_id, made["guest"].id))
        )
        session.add(ConversationParticipant(conversation_id=conversation_id, user_id=user.id))


def _synced_with_newcomer(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> tuple[dict[str, Any], User]:
    """A conversation of two in Stream, and a user Stream holds already."""
    with session_factory() as session, session.begin():
        made = invite(session)
        newcomer = User(email="new@example.com")
        session.add(newcomer)
    pipeline.drain()
    pipeline.emu.reset_request_counts()
    return made, newcomer


def test_a_leave_and_a_join_cost_one_update_and_no_read(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given a conversation of two in Stream, and a user Stream holds already
    made, newcomer = _synced_with_newcomer(pipeline, session_factory)
    # When the guest leaves and the newcomer joins, in one transaction
    _leave_and_join(session_factory, made, newcomer)
    pipeline.drain()
    # Then the channel was changed both ways in one call, planned against Stream's answer
    # when it was created: no read
    counts = pipeline.counts()
    assert counts == {"UpdateChannel": 1}, counts
    channel = pipeline.emu.state()["channels"][f"messaging:invitation_{made['invitation'].id}"]
    assert sorted(channel["members"]) == sorted([str(made["organizer"].id), str(newcomer.id)])
    assert {row["status"] for row in pipeline.rows()} == {"done"}


def test_members_changed_in_stream_by_someone_else_are_corrected_from_the_answer(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given a synced conversation, and a stranger added to its channel in Stream directly
    made, newcomer = _synced_with_newcomer(pipeline, session_factory)
    with session_factory() as session, session.begin():
        stranger = User(email="stranger@example.com")
        session.add(stranger)
    pipeline.drain()
    cid = f"invitation_{made['invitation'].id}"
    pipeline.emu.client().channel("messaging", cid).add_members([str(stranger.id)])
    pipeline.emu.reset_request_counts()
    # When the guest leaves and the newcomer joins
    _leave_and_join(session_factory, made, newcomer)
    pipeline.drain()
    # Then the answer of the one update named the stranger, and a second update removed it
    assert pipeline.counts() == {"UpdateChannel": 2}
    channel = pipeline.emu.state()["channels"][f"messaging:{cid}"]
    assert sorted(channel["members"]) == sorted([str(made["organizer"].id), str(newcomer.id)])
    assert {row["status"] for row in pipeline.rows()} == {"done"}


def test_a_channel_deleted_in_stream_by_hand_is_read_and_made_again(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    # Given a synced conversation whose channel someone deleted in Stream directly
    made, newcomer = _synced_with_newcomer(pipeline, session_factory)
    cid = f"invitation_{made['invitation'].id}"
    pipeline.emu.client().channel("messaging", cid).delete(hard=True)
    pipeline.emu.reset_request_counts()
    # When the guest leaves and the newcomer joins
    _leave_and_join(session_factory, made, newcomer)
    pipeline.drain()
    # Then the update Stream refused (no such channel) led to a read that made it again
    counts = pipeline.counts()
    assert counts.get("GetOrCreateChannel") == 1, counts
    channel = pipeline.emu.state()["channels"][f"messaging:{cid}"]
    assert sorted(channel["members"]) == sorted([str(made["organizer"].id), str(newcomer.id)])
    assert {row["status"] for row in pipeline.rows()} == {"done"}


def test_renames_leaving_and_deletes_converge(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session, session.begin():
        made = invite(session)
    pipeline.drain()
    guest_id, conversation_id = made["guest"].id, made["conversation"].id
    with session_factory() as session, session.begin():
        session.add(Profile(user_id=guest_id, full_name="Gus Guest"))
        event = session.get(Event, made["event"].id)
        assert event is not None
        event.title = "Launch party"
        participant = session.get(ConversationParticipant, (conversation_id, guest_id))
        session.delete(participant)
    pipeline.drain()
    state = pipeline.emu.state()
    cid = f"messaging:invitation_{made['invitation'].id}"
    assert state["users"][str(guest_id)]["name"] == "Gus Guest"
    assert state["channels"][cid]["data"]["name"] == "Launch party"
    assert state["channels"][cid]["members"] == [str(made["organizer"].id)]
    with session_factory() as session, session.begin():
        session.delete(session.get(Conversation, conversation_id))
    pipeline.drain()
    assert pipeline.emu.state()["channels"][cid]["deleted_at"] is not None


def test_out_of_order_and_duplicated_jobs_converge(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session, session.begin():
        made = invite(session)
    conversation_id = str(made["conversation"].id)
    claimed = pipeline.repo.claim(100)  # the relay's claim, jobs sent by hand below
    conv_rows = [row.id for row in claimed if row.target_kind == "conversation"]
    # Given the conversation's job three times, before its users' job, then a stale duplicate
    for _ in range(3):
        pipeline.actor.send("conversation", [conversation_id], conv_rows, {})
    pipeline.send_user_job(claimed)
    pipeline.actor.send("conversation", [conversation_id], conv_rows, {})
    pipeline.drain()
    channel = pipeline.emu.state()["channels"][f"messaging:invitation_{made['invitation'].id}"]
    assert len(channel["members"]) == 2
    assert {row["status"] for row in pipeline.rows()} == {"done"}


def test_a_server_error_then_success_retries_and_converges(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    pipeline.emu.inject_failure("GetOrCreateChannel", status=503, times=2)
    with session_factory() as session, session.begin():
        made = invite(session)
    pipeline.drain()
    assert f"messaging:invitation_{made['invitation'].id}" in pipeline.emu.state()["channels"]
    assert pipeline.emu.request_counts()["by_status"].get("GetOrCreateChannel 503") == 2
    conv_row = next(row for row in pipeline.rows() if row["target_kind"] == "conversation")
    assert conv_row["status"] == "done"
    assert conv_row["last_error"] is None


def test_a_validation_error_fails_the_row_at_once_and_spares_the_others(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    pipeline.emu.inject_failure(
        "GetOrCreateChannel", status=400, times=5, code=4, message="channel data is invalid"
    )
    with session_factory() as session, session.begin():
        invite(session)
    pipeline.drain()
    rows = {row["target_kind"]: row for row in pipeline.rows()}
    failed = rows["conversation"]
    assert failed["status"] == "failed"
    assert "GetOrCreateChannel HTTP 400 code 4" in failed["last_error"]
    assert "channel data is invalid" in failed["last_error"]
    assert rows["user"]["status"] == "done"
    assert pipeline.emu.request_counts()["by_status"]["GetOrCreateChannel 400"] == 1  # no retry


@pytest.mark.slow
def test_a_rate_limited_call_waits_for_the_reset(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    pipeline.emu.set_window(1.0)
    pipeline.emu.set_rate_limit("GetOrCreateChannel", 1)
    conversations = []
    for n in range(3):
        with session_factory() as session, session.begin():
            user = User(email=f"solo{n}@example.com")
            other = User(email=f"other{n}@example.com")
            conversation = Conversation()
            session.add_all([user, other, conversation])
            session.flush()
            session.add_all(
                [
                    ConversationParticipant(conversation_id=conversation.id, user_id=user.id),
                    ConversationParticipant(conversation_id=conversation.id, user_id=other.id),
                ]
            )
            conversations.append(str(conversation.id))
    pipeline.drain(timeout=30)
    by_status = pipeline.emu.request_counts()["by_status"]
    assert by_status.get("GetOrCreateChannel 429", 0) >= 1
    assert by_status["GetOrCreateChannel 201"] == 3
    assert {row["status"] for row in pipeline.rows()} == {"done"}
    channels = pipeline.emu.state()["channels"]
    assert sum(1 for cid in channels if cid.startswith("messaging:dm_")) == 3


def test_a_lost_job_is_dispatched_again_after_the_visibility_timeout(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    for worker in pipeline.workers:
        worker.stop(timeout=5000)
    pipeline.workers.clear()
    with session_factory() as session, session.begin():
        made = invite(session)
    assert pipeline.relay.drain() == 3
    # The jobs vanish (Redis restarted without persistence)
    pipeline.broker.flush_all()
    assert {row["status"] for row in pipeline.rows()} == {"dispatched"}
    pipeline.relay.visibility_timeout = 0.2
    assert pipeline.relay.sweep() == 0  # not yet stale
    time.sleep(0.3)
    assert pipeline.relay.sweep() == 3
    pipeline.start_worker()
    pipeline.drain()
    assert f"messaging:invitation_{made['invitation'].id}" in pipeline.emu.state()["channels"]
    assert {row["status"] for row in pipeline.rows()} == {"done"}
    assert all(row["attempts"] == 2 for row in pipeline.rows())


def test_two_workers_never_reconcile_one_target_at_once(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    pipeline.start_worker(threads=4)  # eight threads in two workers
    pipeline.emu.set_latency(30, endpoint="GetOrCreateChannel")
    with session_factory() as session, session.begin():
        made = invite(session)
    pipeline.drain()
    conversation_id = str(made["conversation"].id)
    for _ in range(8):  # reconciles that read Stream, each a GetOrCreateChannel
        pipeline.actor.send("conversation", [conversation_id], [], {"see_stream": True})
    pipeline.broker.join(pipeline.settings.queue_name, timeout=30_000)
    log = pipeline.emu.request_log("GetOrCreateChannel")
    spans = sorted((entry["received"], entry["answered"]) for entry in log)
    assert len(spans) >= 9
    assert all(later[0] >= earlier[1] for earlier, later in pairwise(spans))


def test_members_stream_lost_are_upserted_again(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    with session_factory() as session, session.begin():
        made = invite(session)
    pipeline.drain()
    # Given Stream lost the users (deleted by hand) while the worker still thinks they exist
    pipeline.emu.reset()
    with session_factory() as session, session.begin():
        event = session.get(Event, made["event"].id)
        assert event is not None
        event.title = "Relaunch"
    pipeline.drain()
    state = pipeline.emu.state()
    assert str(made["guest"].id) in state["users"]
    channel = state["channels"][f"messaging:invitation_{made['invitation'].id}"]
    assert channel["data"]["name"] == "Relaunch"
    assert {row["status"] for row in pipeline.rows()} == {"done"}


def test_relays_running_at_once_claim_each_row_once(pipeline: Pipeline) -> None:
    import threading

    from sqlalchemy import insert

    from stream_outbox.app_hooks import outbox

    with pipeline.engine.begin() as conn:
        conn.execute(
            insert(outbox),
            [
                {"target_kind": "user", "target_id": f"u{n}", "event": "insert", "payload": {}}
                for n in range(600)
            ],
        )
    claimed: list[list[int]] = [[], [], []]

    def claim(into: list[int]) -> None:
        while rows := pipeline.repo.claim(25):
            into += [row.id for row in rows]

    threads = [threading.Thread(target=claim, args=(box,)) for box in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [row_id for box in claimed for row_id in box]
    assert len(every) == len(set(every)) == 600
    assert sum(1 for box in claimed if box) >= 2  # they really shared the work
