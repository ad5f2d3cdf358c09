"""A job that waits for the shared rate budget longer than its patience goes again later
without spending a retry: a busy budget never fails rows (real Redis, the emulator)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from stream_outbox.app_hooks.reference import Conversation, ConversationParticipant, User
from stream_outbox.emulator import Emulator
from stream_outbox.worker.settings import Settings
from tests.support.pipeline import running_pipeline


def test_jobs_starved_of_budget_go_again_without_spending_their_retries(
    settings: Settings,
    clean_db: Engine,
    emu: Emulator,
    session_factory: Callable[[], Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a budget of one GetOrCreateChannel in 2.1 s (30 a minute, less headroom), no
    # retries at all, and twelve conversations, each a job of its own, for four threads
    starved = settings.model_copy(
        update={"rate_limits": {"GetOrCreateChannel": 30}, "max_retries": 0}
    )
    with running_pipeline(starved, clean_db, emu) as pipeline:
        pipeline.relay.conversations_per_job = 1
        with session_factory() as session, session.begin():
            people = [User(email=f"p{n}@example.com") for n in range(13)]
            session.add_all(people)
            session.flush()
            for n in range(12):
                conversation = Conversation()
                session.add(conversation)
                session.flush()
                session.add_all(
                    ConversationParticipant(conversation_id=conversation.id, user_id=p.id)
                    for p in people[n : n + 2]
                )
        # When they drain, four at a time waiting for a slot (each job waits five seconds
        # at most, so some run out of patience)
        with caplog.at_level(logging.INFO, logger="stream_outbox.worker.pipeline.job_runner"):
            pipeline.drain(timeout=120)
        # Then no row failed: a job starved of budget went again, its retries unspent
        rows = pipeline.rows()
        assert {row["status"] for row in rows} == {"done"}, [
            row["last_error"] for row in rows if row["status"] != "done"
        ]
        assert len(emu.state()["channels"]) == 12
        assert "sent again, no retry spent" in caplog.text
