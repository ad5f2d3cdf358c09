"""Helpers shared by the benchmarks: a scratch database, the invitations' organizer and
event, and percentile figures."""

from __future__ import annotations

import os
import statistics
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from stream_outbox.app_hooks.reference import Base, Event, User
from stream_outbox.worker.demo.scratch_db import scratch_database as worker_scratch_database
from stream_outbox.worker.operations.migrate import upgrade
from stream_outbox.worker.settings import normalize_database_url

SERVER_URL = normalize_database_url(
    os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
)


@contextmanager
def scratch_database(prefix: str = "stream_outbox_bench") -> Iterator[str]:
    """A new database with the outbox schema and the reference app; dropped afterwards."""
    with worker_scratch_database(SERVER_URL, prefix) as url:
        upgrade(url)
        engine = create_engine(url)
        Base.metadata.create_all(engine)
        engine.dispose()
        yield url


def organizer_and_event(
    new_session: Callable[[], Session], title: str
) -> tuple[uuid.UUID, uuid.UUID]:
    """A new organizer and its event (the invitations' subject), through ``new_session``."""
    with new_session() as session:
        organizer = User(email=f"org-{uuid.uuid4().hex}@example.com")
        session.add(organizer)
        session.flush()
        event = Event(organizer_id=organizer.id, title=title)
        session.add(event)
        session.commit()
        return organizer.id, event.id


def percentile(samples: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile (0-100) of ``samples``."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(samples: Sequence[float]) -> float:
    """The median of ``samples``."""
    return statistics.median(samples)
