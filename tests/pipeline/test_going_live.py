"""Going live: backfill of a generated history converges, survives a crash, and re-runs cleanly."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from stream_outbox.app_hooks.reference import (
    REFERENCE_BINDING,
    Conversation,
    ConversationParticipant,
    Message,
    User,
)
from stream_outbox.worker.operations.backfill import Scope
from stream_outbox.worker.operations.resync import resync
from stream_outbox.worker.verify.compare import compare
from stream_outbox.worker.verify.readers import held_from_snapshot, read_desired
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.slow

# 800 conversations of 10 messages (8,000 SendMessage calls): GL_CONV=2000 for a larger run
CONVERSATIONS = int(__import__("os").environ.get("GL_CONV", "800"))
MESSAGES_PER_CONVERSATION = 10
USERS = 600


def generate_history(engine: Engine, seed: int = 7) -> dict[str, int]:
    """Years of chat written before go-live (no hooks): users, conversations, messages."""
    rng = random.Random(seed)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    users = [
        {"id": uuid.UUID(int=rng.getrandbits(128)), "email": f"u{n}@example.com"}
        for n in range(USERS)
    ]
    conversations, participants, messages = [], [], []
    for n in range(CONVERSATIONS):
        cid = uuid.UUID(int=rng.getrandbits(128))
        created = start + timedelta(hours=n)
        conversations.append({"id": cid, "created_at": created})
        members = rng.sample(users, rng.choice([2, 2, 3]))
        participants += [{"conversation_id": cid, "user_id": m["id"]} for m in members]
        for k in range(MESSAGES_PER_CONVERSATION):
            sender = None if k == 0 else rng.choice(members)["id"]  # first one: a system message
            messages.append(
                {
                    "id": uuid.UUID(int=rng.getrandbits(128)),
                    "conversation_id": cid,
                    "sender_id": sender,
                    "content": f"message {k} of {n}",
                    "created_at": created + timedelta(minutes=k),
                }
            )
    with engine.begin() as conn:
        conn.execute(insert(User), users)
        conn.execute(insert(Conversation), conversations)
        conn.execute(insert(ConversationParticipant), participants)
        conn.execute(insert(Message), messages)
    return {"users": USERS, "conversations": CONVERSATIONS, "messages": len(messages)}


def backfill(engine: Engine, **options: object) -> dict[str, int]:
    scope = Scope(REFERENCE_BINDING)
    return resync(
        engine,
        REFERENCE_BINDING,
        actor="test",
        kinds=scope.kinds(),
        event="backfill",
        payload={"legacy": True, "history": True},
        select_ids=scope.selector(),
        **options,  # type: ignore[arg-type]
    )


def without_times(state: dict[str, Any]) -> dict[str, Any]:
    """The emulator's state without ``updated_at`` (a repeated upsert touches it)."""
    users = {
        uid: {k: v for k, v in u.items() if k != "updated_at"} for uid, u in state["users"].items()
    }
    return {**state, "users": users}


def differences(pipeline: Pipeline) -> list[str]:
    desired = read_desired(pipeline.engine, REFERENCE_BINDING, pipeline.repo, messages=True)
    held = held_from_snapshot(pipeline.emu.state())
    return [str(d) for d in compare(desired=desired, held=held)]


@pytest.mark.timeout(300)
def test_backfill_converges_after_a_crash_and_a_second_run_changes_nothing(
    pipeline: Pipeline,
) -> None:
    generated = generate_history(pipeline.engine)
    pipeline.start_worker(threads=4)
    # Given a backfill killed halfway through enqueueing
    batches: list[int] = []

    def crash_halfway(kind: str, count: int) -> None:
        if kind == "conversation":
            batches.append(count)
        if len(batches) == 2:  # half the conversations written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        backfill(pipeline.engine, batch=CONVERSATIONS // 4, progress=crash_halfway)
    # and a history import whose Stream calls fail or lose their answers now and then
    pipeline.emu.drop_connections("SendMessage", times=5, apply=True)  # sent, answer lost
    pipeline.emu.inject_failure("SendMessage", status=503, times=5)
    pipeline.drain(timeout=120)
    # When the backfill runs again, it resumes after the last id it wrote
    counts = backfill(pipeline.engine, batch=CONVERSATIONS // 4)
    assert counts == {"user": USERS, "conversation": CONVERSATIONS}
    pipeline.drain(timeout=200)
    # Then Stream holds exactly the database: users, legacy channels, every message once
    assert differences(pipeline) == []
    state = pipeline.emu.state()
    legacy = [cid for cid in state["channels"] if cid.startswith("messaging:legacy_")]
    assert len(legacy) == CONVERSATIONS
    ids = [m["id"] for messages in state["messages"].values() for m in messages]
    assert len(ids) == len(set(ids)) == generated["messages"]
    some = state["messages"][legacy[0]]
    assert [m["text"] for m in some] == sorted(
        (m["text"] for m in some), key=lambda t: int(t.split()[1])
    )
    assert sum(1 for m in some if m.get("system")) == 1
    # When it runs a second time from scratch, nothing changes in Stream
    before = pipeline.emu.state()
    pipeline.emu.reset_request_counts()
    backfill(pipeline.engine, batch=500, resume=False)
    pipeline.drain(timeout=120)
    assert without_times(pipeline.emu.state()) == without_times(before)
    calls = Counter(pipeline.counts())
    assert calls["SendMessage"] == 0  # history cursors are at the end
    assert calls["UpdateChannel"] == calls["UpdateChannelPartial"] == 0
    assert {row["status"] for row in pipeline.rows()} == {"done"}
