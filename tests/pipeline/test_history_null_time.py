"""The history import refuses a message without ``created_at``, and takes it once it has one.

The import orders a conversation's messages by ``(created_at, id)`` and keeps its place
as the last pair it copied, so a message without a time could never move it on. The
batch holding such a message is refused before anything of it goes to Stream; the
conversation's row fails, naming the message, until the time is set and the row is
replayed.

The reference app's and the text-id app's messages have ``created_at NOT NULL``; the
app here is the text-id app with a messages table of its own that allows NULL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import DateTime, Engine, String, Text, insert, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from stream_outbox.app_hooks.binding import Binding
from stream_outbox.worker.operations.backfill import Scope
from stream_outbox.worker.operations.replay import replay
from stream_outbox.worker.operations.resync import resync
from stream_outbox.worker.sync.history import BATCH
from tests.apps.string_ids import (
    STRING_ID_BINDING,
    SConversation,
    SParticipant,
    StringIdBase,
    SUser,
)
from tests.support.pipeline import Pipeline


class UndatedBase(DeclarativeBase):
    """The messages table of an app whose messages may lack a time."""


class UndatedMessage(UndatedBase):
    # The conversation and sender are sid_* ids (no foreign keys: another metadata's tables)
    __tablename__ = "nt_messages"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(255), index=True)
    sender_id: Mapped[str | None] = mapped_column(String(255))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


UNDATED_BINDING = replace(STRING_ID_BINDING, message=UndatedMessage)
START = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
CONVERSATION = "planning"
UNDATED = "m-undated"


@pytest.fixture()
def app(pipeline: Pipeline) -> Iterator[Engine]:
    """The app's tables, and the worker's runtime bound to it (the pipeline's worker runs it)."""
    StringIdBase.metadata.create_all(pipeline.engine)
    UndatedBase.metadata.create_all(pipeline.engine)
    try:
        with pipeline.bound_to(UNDATED_BINDING):
            yield pipeline.engine
    finally:
        UndatedBase.metadata.drop_all(pipeline.engine)
        StringIdBase.metadata.drop_all(pipeline.engine)


def write_history(engine: Engine, dated: int) -> list[str]:
    """Before go-live (no hooks): two people, one conversation, ``dated`` messages a minute
    apart and one message without a time; returns the dated messages' ids, oldest first."""
    ids = [f"m{n:04d}" for n in range(dated)]
    with engine.begin() as conn:
        conn.execute(
            insert(SUser), [{"id": "ann", "email": "ann@x"}, {"id": "bob", "email": "bob@x"}]
        )
        conn.execute(insert(SConversation), [{"id": CONVERSATION}])
        conn.execute(
            insert(SParticipant),
            [{"conversation_id": CONVERSATION, "user_id": u} for u in ("ann", "bob")],
        )
        conn.execute(
            insert(UndatedMessage),
            [
                {
                    "id": mid,
                    "conversation_id": CONVERSATION,
                    "sender_id": ("ann", "bob")[n % 2],
                    "content": f"dated {n}",
                    "created_at": START + timedelta(minutes=n),
                }
                for n, mid in enumerate(ids)
            ]
            + [
                {
                    "id": UNDATED,
                    "conversation_id": CONVERSATION,
                    "sender_id": "ann",
                    "content": "undated",
                    "created_at": None,
                }
            ],
        )
    return ids


def backfill(engine: Engine, binding: Binding = UNDATED_BINDING) -> dict[str, int]:
    """``stream-outbox backfill``: every user and conversation, legacy channels, history."""
    scope = Scope(binding)
    return resync(
        engine,
        binding,
        actor="test",
        kinds=scope.kinds(),
        event="backfill",
        payload={"legacy": True, "history": True},
        select_ids=scope.selector(),
        resume=False,
    )


def conversation_rows(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [row for row in pipeline.rows() if row["target_kind"] == "conversation"]


def held_messages(pipeline: Pipeline) -> list[dict[str, Any]]:
    """The conversation's channel's messages, read back from Stream with the real SDK."""
    ref = pipeline.repo.channels.channel_for(CONVERSATION)
    assert ref is not None, "the conversation has no channel"
    client = pipeline.emu.client()
    answer = client.channel(ref.channel_type, ref.channel_id).query(messages={"limit": 300})
    messages: list[dict[str, Any]] = answer["messages"]
    return messages


def stable(pipeline: Pipeline, wait: float = 0.5) -> list[tuple[Any, ...]]:
    """The rows as (id, kind, status, attempts), once ``wait`` has passed with the worker
    running and the relay polled: a retry (backoff 20 to 200 ms) would show in the meantime."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        pipeline.relay.run_once()
        time.sleep(0.05)
    pipeline.broker.join(pipeline.settings.queue_name, timeout=5000)
    return [(r["id"], r["target_kind"], r["status"], r["attempts"]) for r in pipeline.rows()]


def set_time_and_replay(pipeline: Pipeline, moment: datetime) -> list[int]:
    """The operator's fix: give the message its time, then replay the failed row."""
    with pipeline.engine.begin() as conn:
        conn.execute(
            update(UndatedMessage).where(UndatedMessage.id == UNDATED).values(created_at=moment)
        )
    failed = [row["id"] for row in conversation_rows(pipeline) if row["status"] == "failed"]
    return replay(pipeline.engine, actor="test", ids=failed, per_second=1000)


def test_a_message_without_time_fails_the_import_until_it_has_one(
    pipeline: Pipeline, app: Engine
) -> None:
    # Given a conversation's history of five dated messages and one without created_at
    dated = write_history(app, dated=5)

    # When the conversation is backfilled with its history
    assert backfill(app) == {"user": 2, "conversation": 1}
    pipeline.drain()

    # Then its row fails at once, naming the message and its missing time
    [row] = conversation_rows(pipeline)
    assert row["status"] == "failed"
    assert row["attempts"] == 1
    assert UNDATED in row["last_error"]
    assert "created_at" in row["last_error"]
    # and the channel is made, but nothing of the refused batch was sent, nor the cursor moved
    assert held_messages(pipeline) == []
    assert pipeline.counts().get("SendMessage", 0) == 0
    assert pipeline.repo.channels.history_cursor(CONVERSATION, 0) is None
    assert {r["status"] for r in pipeline.rows() if r["target_kind"] == "user"} == {"done"}

    # When the worker and relay keep running, Then nothing loops: no retry, no continuation row
    settled = stable(pipeline)
    assert stable(pipeline) == settled
    assert [r for r in settled if r[1] == "conversation"] == [
        (row["id"], "conversation", "failed", 1)
    ]

    # When the message gets its time (between the third and fourth) and the row is replayed
    assert set_time_and_replay(pipeline, START + timedelta(minutes=2, seconds=30)) == [row["id"]]
    pipeline.drain()

    # Then the row is done and Stream holds the whole history once, in time order
    [replayed] = conversation_rows(pipeline)
    assert replayed["status"] == "done", replayed["last_error"]
    held = held_messages(pipeline)
    expected = [*dated[:3], UNDATED, *dated[3:]]
    assert [m["id"] for m in held] == [f"msg-{mid}" for mid in expected]
    assert [m["text"] for m in held] == [
        "dated 0",
        "dated 1",
        "dated 2",
        "undated",
        "dated 3",
        "dated 4",
    ]
    assert all(m.get("silent") for m in held)

    # When the backfill runs again, Then nothing more is sent: no message is duplicated
    pipeline.emu.reset_request_counts()
    backfill(app)
    pipeline.drain()
    assert pipeline.counts().get("SendMessage", 0) == 0
    assert [m["id"] for m in held_messages(pipeline)] == [f"msg-{mid}" for mid in expected]
    assert {r["status"] for r in pipeline.rows()} == {"done"}


def test_a_message_without_time_after_a_full_batch_is_refused_too(
    pipeline: Pipeline, app: Engine
) -> None:
    # Given a history longer than one batch, and one message without created_at (PostgreSQL
    # sorts it after every dated one)
    dated = write_history(app, dated=BATCH + 20)

    # When the conversation is backfilled with its history
    backfill(app)
    pipeline.drain()

    # Then the history is refused before anything is sent: the cursor, which orders by
    # created_at, could never reach the undated message (it sorts after every dated one)
    held = held_messages(pipeline)
    [row] = conversation_rows(pipeline)
    assert (row["status"], len(held)) == ("failed", 0), (row["last_error"], len(held))
    assert UNDATED in row["last_error"]
    assert "created_at" in row["last_error"]
    assert pipeline.repo.channels.history_cursor(CONVERSATION, 0) is None

    # When it gets a time after the others and the row is replayed
    set_time_and_replay(pipeline, START + timedelta(days=1))
    pipeline.drain()

    # Then Stream holds every message once, the undated one last
    assert [m["id"] for m in held_messages(pipeline)] == [f"msg-{mid}" for mid in [*dated, UNDATED]]
