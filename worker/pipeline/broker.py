"""The Dramatiq broker, its middleware, and the reconcile actor declared on it."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage, Retries

from worker.pipeline.actor import ACTOR_NAME, run_job
from worker.pipeline.middleware import CurrentBroker
from worker.pipeline.wakeup import WakingRedisBroker
from worker.settings import Settings

__all__ = ["ACTOR_NAME", "build_broker", "configure_middleware", "declare_actors"]


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


def declare_actors(broker: dramatiq.Broker, settings: Settings) -> dramatiq.Actor[Any, Any]:
    """Declare the reconcile actor on ``broker`` (idempotent per broker)."""
    if ACTOR_NAME in broker.actors:
        return broker.get_actor(ACTOR_NAME)
    return dramatiq.Actor(
        run_job,
        actor_name=ACTOR_NAME,
        queue_name=settings.queue_name,
        broker=broker,
        priority=0,
        options={"max_retries": settings.max_retries},
    )
