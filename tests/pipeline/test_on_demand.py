"""On-demand migration through the router: 202 then 200, coalescing, refusals, and a
legacy conversation migrated ahead of a large backfill."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dramatiq.middleware import Middleware
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, insert, select

from stream_outbox.app_hooks import outbox
from stream_outbox.app_hooks.capture import write_changes
from stream_outbox.app_hooks.changes import Change, Target
from stream_outbox.app_hooks.lookup import channel_for_conversation
from stream_outbox.app_hooks.on_demand import MigrationState, migration_status, request_migration
from stream_outbox.app_hooks.outbox import PRIORITY_ON_DEMAND
from stream_outbox.app_hooks.reference import Conversation, ConversationParticipant, Message, User
from stream_outbox.worker.pipeline import job_runner
from stream_outbox.worker.store.channel_map import ChannelRef
from tests.pipeline.test_going_live import backfill
from tests.support.pipeline import Pipeline
from tests.support.processes import wait_for

START = datetime(2023, 1, 1, tzinfo=UTC)


def legacy_conversations(engine: Engine, count: int, messages: int = 2) -> list[dict[str, Any]]:
    """Conversations written before go-live (no capture), two members each, with history."""
    made: list[dict[str, Any]] = []
    users, conversations, participants, rows = [], [], [], []
    for n in range(count):
        pair = [{"id": uuid.uuid4(), "email": f"{uuid.uuid4().hex}@example.com"} for k in range(2)]
        cid = uuid.uuid4()
        users += pair
        conversations.append({"id": cid, "created_at": START + timedelta(minutes=n)})
        participants += [{"conversation_id": cid, "user_id": u["id"]} for u in pair]
        for k in range(messages):
            at = START + timedelta(minutes=n, seconds=k)
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "conversation_id": cid,
                    "sender_id": pair[k % 2]["id"],
                    "content": f"message {k} of {n}",
                    "created_at": at,
                }
            )
        made.append({"id": str(cid), "members": [str(u["id"]) for u in pair]})
    with engine.begin() as conn:
        conn.execute(insert(User), users)
        conn.execute(insert(Conversation), conversations)
        conn.execute(insert(ConversationParticipant), participants)
        if rows:
            conn.execute(insert(Message), rows)
    return made


def priority_rows(engine: Engine, conversation_id: str) -> list[dict[str, Any]]:
    query = select(outbox).where(outbox.c.target_id == conversation_id, outbox.c.priority > 0)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def test_migrate_answers_202_with_the_predicted_channel_then_200_once_synced(
    pipeline: Pipeline, frontend: TestClient
) -> None:
    # Given a legacy conversation Stream does not hold
    (conversation,) = legacy_conversations(pipeline.engine, 1, messages=3)
    url = f"/chat/conversations/{conversation['id']}/migrate"
    member = {"x-user-id": conversation["members"][0]}
    # When a participant asks for it, repeatedly
    first = frontend.post(url, headers=member)
    again = frontend.post(url, headers=member)
    polled = frontend.get(url, headers=member)
    # Then each answer is 202 with the channel the worker will assign, and one row is written
    for answer in (first, again, polled):
        assert answer.status_code == 202
        assert answer.headers["location"] == url
        body = answer.json()
        assert body["cid"] == f"messaging:legacy_{conversation['id']}"
        assert (body["synced"], body["status"], body["poll"]) == (False, "pending", url)
    (row,) = priority_rows(pipeline.engine, conversation["id"])
    assert row["payload"] == {"legacy": True, "history": True}
    # When the worker has run it
    pipeline.drain()
    # Then the channel is there with its history, and both verbs answer 200
    for answer in (frontend.get(url, headers=member), frontend.post(url, headers=member)):
        assert answer.status_code == 200
        assert answer.json()["synced"] is True and answer.json()["poll"] is None
        assert answer.json()["cid"] == first.json()["cid"]
    texts = [m["text"] for m in pipeline.emu.state()["messages"][first.json()["cid"]]]
    assert texts == ["message 0 of 0", "message 1 of 0", "message 2 of 0"]
    assert len(priority_rows(pipeline.engine, conversation["id"])) == 1


def test_the_channel_lookup_names_the_channel_a_migration_makes(
    pipeline: Pipeline, frontend: TestClient
) -> None:
    # Given a legacy conversation Stream does not hold
    (conversation,) = legacy_conversations(pipeline.engine, 1)
    member = {"x-user-id": conversation["members"][0]}
    lookup = f"/chat/conversations/{conversation['id']}/channel"
    # When the page looks its channel up, then asks for it
    looked = frontend.get(lookup, headers=member)
    asked = frontend.post(f"/chat/conversations/{conversation['id']}/migrate", headers=member)
    # Then the lookup named the channel the migration makes, before and after it
    assert looked.status_code == 200 and looked.json()["synced"] is False
    assert looked.json()["cid"] == asked.json()["cid"] == f"messaging:legacy_{conversation['id']}"
    pipeline.drain()
    after = frontend.get(lookup, headers=member).json()
    assert (after["cid"], after["synced"]) == (looked.json()["cid"], True)


def test_migrate_refuses_strangers_and_unknown_conversations(
    pipeline: Pipeline, frontend: TestClient
) -> None:
    (conversation,) = legacy_conversations(pipeline.engine, 1)
    (other,) = legacy_conversations(pipeline.engine, 1)
    url = f"/chat/conversations/{conversation['id']}/migrate"
    stranger = {"x-user-id": other["members"][0]}
    for verb in (frontend.post, frontend.get):
        refused = verb(url, headers=stranger)
        assert refused.status_code == 403
        assert refused.json()["detail"] == "not a participant of this conversation"
        unknown = verb(f"/chat/conversations/{uuid.uuid4()}/migrate", headers=stranger)
        assert unknown.status_code == 404 and unknown.json()["detail"].startswith("no conversation")
        garbage = verb("/chat/conversations/not-a-uuid/migrate", headers=stranger)
        assert garbage.status_code == 404
    # A poll before any request says what to do
    member = {"x-user-id": conversation["members"][0]}
    early = frontend.get(url, headers=member)
    assert early.status_code == 409 and "POST to ask" in early.json()["detail"]
    assert priority_rows(pipeline.engine, conversation["id"]) == []


def test_a_failed_migration_answers_its_error_and_a_new_request_tries_again(
    pipeline: Pipeline, frontend: TestClient
) -> None:
    # Given a legacy conversation whose channel Stream refuses
    (conversation,) = legacy_conversations(pipeline.engine, 1, messages=1)
    url = f"/chat/conversations/{conversation['id']}/migrate"
    member = {"x-user-id": conversation["members"][0]}
    pipeline.emu.inject_failure("GetOrCreateChannel", status=400, code=4, message="refused")
    assert frontend.post(url, headers=member).status_code == 202
    pipeline.drain()
    failed = frontend.get(url, headers=member)
    assert failed.status_code == 502
    assert failed.json()["detail"].startswith(f"migration of conversation {conversation['id']}")
    assert "refused" in failed.json()["detail"]
    assert "\n" not in failed.json()["detail"]
    # When the participant asks again, a new priority row is written
    assert frontend.post(url, headers=member).status_code == 202
    assert [row["status"] for row in priority_rows(pipeline.engine, conversation["id"])] == [
        "failed",
        "pending",
    ]


def test_a_priority_claim_takes_the_backfills_row_of_the_conversation_with_it(
    pipeline: Pipeline,
) -> None:
    conversations = legacy_conversations(pipeline.engine, 3)
    backfill(pipeline.engine)
    wanted = conversations[1]["id"]
    with pipeline.engine.begin() as conn:
        asked = request_migration(conn, wanted)
    assert asked is not None and asked.state is MigrationState.PENDING
    claimed = pipeline.repo.claim(10, priority=True)
    assert {row.target_id for row in claimed} == {wanted}
    assert sorted(row.event for row in claimed) == ["backfill", "migrate"]
    # and the backlog's claim leaves priority rows alone
    with pipeline.engine.begin() as conn:
        request_migration(conn, conversations[2]["id"])
    backlog = pipeline.repo.claim(100)
    assert conversations[2]["id"] not in {
        row.target_id for row in backlog if row.event != "backfill"
    }
    assert all(row.event == "backfill" for row in backlog)


class _Attempts(Middleware):
    """Every job the worker runs: its actor, targets, retries so far, and whether it failed."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, list[str], int, bool]] = []

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        retries = int(message.options.get("retries", 0))
        self.seen.append((message.actor_name, message.args[1], retries, exception is not None))


def test_a_priority_job_retried_after_an_error_stays_a_priority_job(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a conversation asked for, whose first attempt Stream answers 503
    attempts = _Attempts()
    pipeline.broker.add_middleware(attempts)
    (wanted,) = legacy_conversations(pipeline.engine, 1)
    with pipeline.engine.begin() as conn:
        request_migration(conn, wanted["id"])
    monkeypatch.setattr(job_runner, "_delay_ms", lambda *_, **__: 300)
    pipeline.emu.inject_failure("GetOrCreateChannel", 503)
    pipeline.relay.run_once()
    wait_for(lambda: priority_rows(pipeline.engine, wanted["id"])[0]["last_error"], "the 503")
    # and, while its retry waits, a backlog of a hundred conversations dispatched
    others = legacy_conversations(pipeline.engine, 100)
    backlog = Change(Target("conversation", ""), "backfill", {"legacy": True, "history": True})
    with pipeline.engine.begin() as conn:
        write_changes(
            conn, [backlog._replace(target=Target("conversation", c["id"])) for c in others]
        )
    pipeline.relay.run_once()
    # When the worker has run it all
    pipeline.drain()
    wait_for(lambda: priority_rows(pipeline.engine, wanted["id"])[0]["status"] == "done", "done")
    # Then the retry ran as a priority job, and the row is still a priority row
    assert [a for a in attempts.seen if wanted["id"] in a[1]] == [
        ("reconcile_priority", [wanted["id"]], 0, True),
        ("reconcile_priority", [wanted["id"]], 1, False),
    ]
    (row,) = priority_rows(pipeline.engine, wanted["id"])
    assert row["priority"] == PRIORITY_ON_DEMAND
    assert len(pipeline.emu.state()["channels"]) == 101


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_legacy_conversation_migrates_on_demand_ahead_of_a_large_backfill(
    pipeline: Pipeline, frontend: TestClient
) -> None:
    # Given a backfill of a few thousand legacy conversations, draining
    conversations = legacy_conversations(pipeline.engine, 1500, messages=1)
    counts = backfill(pipeline.engine)
    assert counts["conversation"] == 1500
    relay = threading.Thread(target=pipeline.relay.run, daemon=True)
    relay.start()
    try:
        wait_for(lambda: done_rows(pipeline.engine) >= 50, "50 rows done", timeout=60)
        # When a participant opens the conversation whose backfill row is last of all
        last = next(c for c in conversations if c["id"] == last_backfilled(pipeline.engine))
        url = f"/chat/conversations/{last['id']}/migrate"
        member = {"x-user-id": last["members"][0]}
        asked = frontend.post(url, headers=member)
        assert asked.status_code == 202
        wait_for(
            lambda: frontend.get(url, headers=member).status_code == 200, "the channel", timeout=60
        )
        # Then its channel is in Stream, with its history, while most of the backlog is not
        state = pipeline.emu.state()
        cid = asked.json()["cid"]
        assert cid in state["channels"]
        assert [m["text"] for m in state["messages"][cid]] == [
            f"message 0 of {conversations.index(last)}"
        ]
        assert len(state["channels"]) < len(conversations) // 2
        with pipeline.engine.connect() as conn:
            still_open = conn.scalar(
                select(func.count())
                .select_from(outbox)
                .where(outbox.c.status.in_(("pending", "dispatched")))
            )
        assert still_open and still_open > len(conversations) // 2
        # And the backfill's own row of it, run later, sends nothing again
        pipeline.drain(timeout=90)
    finally:
        pipeline.relay.stop()
        relay.join(timeout=10)
    final = pipeline.emu.state()
    assert len(final["channels"]) == len(conversations)
    assert len(final["messages"][cid]) == 1
    with pipeline.engine.connect() as conn:
        found = migration_status(conn, last["id"])
    assert found is not None and found.synced


def done_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.scalar(select(func.count()).select_from(outbox).where(outbox.c.status == "done"))
            or 0
        )


def last_backfilled(engine: Engine) -> str:
    """The conversation whose backfill row is the last of the backlog."""
    query = (
        select(outbox.c.target_id)
        .where(outbox.c.target_kind == "conversation")
        .order_by(outbox.c.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        return str(conn.scalar(query))


def test_an_id_assigned_is_not_synced_until_stream_holds_the_channel(
    pipeline: Pipeline,
) -> None:
    # Given a legacy conversation whose channel id is assigned (as an export or a
    # job about to create it does), with nothing left in the outbox
    [made] = legacy_conversations(pipeline.engine, 1)
    cid = str(made["id"])
    ref = pipeline.repo.channels.assign_channel(cid, [ChannelRef("messaging", f"legacy_{cid}")])
    # Then neither the lookup nor the on-demand state calls it synced
    with pipeline.engine.connect() as conn:
        looked_up = channel_for_conversation(conn, cid)
        status = migration_status(conn, cid)
    assert looked_up is not None and looked_up.cid == f"messaging:{ref.channel_id}"
    assert looked_up.synced is False and looked_up.pending_import is False
    assert status is not None and status.state is MigrationState.NOT_REQUESTED
    # When it is asked for, Then the job creates the channel and it is synced
    with pipeline.engine.begin() as conn:
        assert request_migration(conn, cid).state is MigrationState.PENDING  # type: ignore[union-attr]
    pipeline.drain()
    assert f"messaging:{ref.channel_id}" in pipeline.emu.state()["channels"]
    with pipeline.engine.connect() as conn:
        assert channel_for_conversation(conn, cid).synced is True  # type: ignore[union-attr]
        assert migration_status(conn, cid).state is MigrationState.SYNCED  # type: ignore[union-attr]
