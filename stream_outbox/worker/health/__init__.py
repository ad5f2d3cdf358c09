"""Health of the relay and the workers, for orchestrators.

Liveness: the process's own loop is alive (the relay's loop ran recently, the
worker's Dramatiq threads run). Readiness: the database, Redis and Stream answer.
Both are served beside the metrics (``/healthz``, ``/readyz``) and checked by
``stream-outbox health``.
"""

from stream_outbox.worker.health.checks import (
    Check,
    Heartbeat,
    Readiness,
    Report,
    ask_liveness,
    check_database,
    check_redis,
    check_stream,
    threads_alive,
)
from stream_outbox.worker.health.server import health_app, serve

__all__ = [
    "Check",
    "Heartbeat",
    "Readiness",
    "Report",
    "ask_liveness",
    "check_database",
    "check_redis",
    "check_stream",
    "health_app",
    "serve",
    "threads_alive",
]
