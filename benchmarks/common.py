"""Helpers shared by the benchmarks: a scratch database and percentile figures."""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import create_engine

from app_hooks.reference import Base
from worker.admin.migrate import upgrade
from worker.demo.scratch_db import scratch_database as worker_scratch_database
from worker.settings import normalize_database_url

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


def percentile(samples: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile (0-100) of ``samples``."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(samples: Sequence[float]) -> float:
    """The median of ``samples``."""
    return statistics.median(samples)
