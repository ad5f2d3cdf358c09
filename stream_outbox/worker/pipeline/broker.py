"""The Dramatiq broker, its middleware, and the reconcile actors declared on it."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage, Retries

from stream_outbox.worker.pipeline.job_runner import (
    ACTOR_NAME,
    PRIORITY_ACTOR_NAME,
    run_job,
    run_priority_job,
)
from stream_outbox.worker.pipeline.middleware import CurrentBroker
from stream_outbox.worker.pipeline.wakeup import WakingRedisBroker
from stream_outbox.worker.settings import Settings

__all__ = [
    "ACTOR_NAME",
    "BACKLOG_PRIORITY",
    "PRIORITY_ACTOR_NAME",
    "build_broker",
    "configure_middleware",
    "declare_actors",
    "priority_queue_name",
]

# Dramatiq runs a worker's prefetched messages lowest actor priority first: the priority
# actor's before the backlog's.
BACKLOG_PRIORITY = 10
_FIRST = 0


def build_broker(settings: Settings, **options: Any) -> RedisBroker:
    """A Redis broker (idle workers woken at each enqueue, see :mod:`worker.pipeline.wakeup`)
    with our retry policy and the current-message middleware."""
    options.setdefault("namespace", f"{settings.redis_prefix}:dramatiq")
    options.setdefault("wake_channel", f"{settings.redis_prefix}:dramatiq:wake")
    broker = WakingRedisBroker(url=settings.redis_url, **options)
    configure_middleware(broker, settings)
    return broker


def configure_middleware(broker: dramatiq.Broker, settings: Settings) -> None:
    """Set retry limits and backoffs from the settings; add CurrentMessage and CurrentBroker."""
    for middleware in broker.middleware:
        if isinstance(middleware, Retries):
            middleware.max_retries = settings.max_retries
            middleware.min_backoff = settings.min_backoff_ms
            middleware.max_backoff = settings.max_backoff_ms
    if not any(isinstance(m, CurrentMessage) for m in broker.middleware):
        broker.add_middleware(CurrentMessage())
    if not any(isinstance(m, CurrentBroker) for m in broker.middleware):
        broker.add_middleware(CurrentBroker())


def priority_queue_name(settings: Settings) -> str:
    """The queue of the priority actor: the backlog's queue name with ``_priority``."""
    return f"{settings.queue_name}_priority"


def declare_actors(broker: dramatiq.Broker, settings: Settings) -> dramatiq.Actor[Any, Any]:
    """Declare the reconcile actor and the priority actor on ``broker`` (idempotent per
    broker); returns the reconcile actor (the relay finds the other on its broker).

    Each has its own queue, so a priority message never waits behind the backlog in
    Redis, and a worker consumes both; among the messages it has fetched, it runs the
    priority actor's first.
    """
    options = {"max_retries": settings.max_retries}
    if PRIORITY_ACTOR_NAME not in broker.actors:
        dramatiq.Actor(
            run_priority_job,
            actor_name=PRIORITY_ACTOR_NAME,
            queue_name=priority_queue_name(settings),
            broker=broker,
            priority=_FIRST,
            options=options,
        )
    if ACTOR_NAME in broker.actors:
        return broker.get_actor(ACTOR_NAME)
    return dramatiq.Actor(
        run_job,
        actor_name=ACTOR_NAME,
        queue_name=settings.queue_name,
        broker=broker,
        priority=BACKLOG_PRIORITY,
        options=options,
    )
