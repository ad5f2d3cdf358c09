"""What a worker process holds: settings, engine, repository, Stream gateway, Redis."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from redis import Redis
from sqlalchemy import Engine, create_engine

from stream_outbox.app_hooks.binding import Binding
from stream_outbox.worker.app_binding import load_binding
from stream_outbox.worker.settings import Settings
from stream_outbox.worker.store.held_channels import HeldChannels
from stream_outbox.worker.store.locks import TargetLocks
from stream_outbox.worker.store.rate_budget import RedisRateBudget
from stream_outbox.worker.store.repository import OutboxRepository
from stream_outbox.worker.stream.gateway import StreamGateway
from stream_outbox.worker.stream.limits import PUBLISHED_LIMITS
from stream_outbox.worker.stream.protocol import Gateway

__all__ = ["Runtime", "current", "delete_prefixed_keys", "install", "operator_gateway", "reset"]

# How long an operator's Stream call may wait out Stream's rate limits, in seconds
OPERATOR_PATIENCE_S = 900.0


@dataclass
class Runtime:
    """The worker's connections, built once per process."""

    settings: Settings
    engine: Engine
    repo: OutboxRepository
    gateway: Gateway
    redis: Redis
    locks: TargetLocks
    binding: Binding
    # Set when the process is shutting down: long jobs stop early and leave the rest
    stopping: threading.Event = field(default_factory=threading.Event)
    # The threads a job's conversations fan out to when Stream is slow (started on use)
    fanout: ThreadPoolExecutor | None = None

    @property
    def held(self) -> HeldChannels:
        """What Stream last answered for the channels this process reconciles."""
        return HeldChannels(self.redis, self.settings.redis_prefix)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        binding: Binding | None = None,
        *,
        engine: Engine | None = None,
        redis: Redis | None = None,
    ) -> Runtime:
        """Connect everything the settings name (lazily: nothing is dialled yet), or use
        the ``engine`` and ``redis`` client given."""
        if binding is None:
            binding = load_binding(settings.binding)
        settings.stream_credentials()  # a missing credential is named before anything is built
        if engine is None:
            engine = create_engine(settings.database_url, pool_pre_ping=True, pool_size=10)
        if redis is None:
            redis = Redis.from_url(settings.redis_url)
        prefix = settings.redis_prefix
        stopping = threading.Event()  # lock, budget and task waits end at once when it is set
        budget = _budget(settings, redis, lambda: gateway.rate_limits(), stopping)
        gateway = StreamGateway.from_settings(settings, budget, stopping)
        return cls(
            settings=settings,
            engine=engine,
            repo=OutboxRepository(engine),
            gateway=gateway,
            redis=redis,
            locks=TargetLocks(
                redis,
                prefix=f"{prefix}:lock",
                lease=settings.lock_lease.total_seconds(),
                stopping=stopping,
            ),
            binding=binding,
            stopping=stopping,
            fanout=ThreadPoolExecutor(settings.stream_concurrency, thread_name_prefix="stream")
            if settings.stream_concurrency > 1
            else None,
        )


def operator_gateway(
    settings: Settings, *, patience: float = OPERATOR_PATIENCE_S, redis: Redis | None = None
) -> StreamGateway:
    """The gateway of the operators' tools (``admin verify``, ``admin show``, the
    dashboard): its calls take slots of the workers' shared budget, and a 429 waits as
    Stream asks, up to ``patience`` seconds a call, rather than fail."""
    redis = redis if redis is not None else Redis.from_url(settings.redis_url)
    budget = _budget(settings, redis, lambda: gateway.rate_limits())
    gateway = StreamGateway.from_settings(settings, budget, patience=patience)
    return gateway


def _budget(
    settings: Settings,
    redis: Redis,
    ask: Callable[[], Mapping[str, int]],
    stopping: threading.Event | None = None,
) -> RedisRateBudget:
    """The shared budget: Stream's limits (asked now and then, the published table until
    Stream answers) under ``OUTBOX_RATE_LIMITS``; only the latter without stream limits."""
    overrides = settings.rate_limits
    prefix = f"{settings.redis_prefix}:rate"
    if not settings.stream_limits:
        return RedisRateBudget(redis, overrides, prefix=prefix, stopping=stopping)

    def refresh() -> dict[str, int]:
        return {**PUBLISHED_LIMITS, **ask(), **overrides}

    return RedisRateBudget(
        redis,
        {**PUBLISHED_LIMITS, **overrides},
        prefix=prefix,
        refresh=refresh,
        stopping=stopping,
    )


_current: Runtime | None = None
_building = threading.Lock()  # worker threads may ask for it at once: one is built


def install(runtime: Runtime) -> None:
    """Make ``runtime`` the one the actors use in this process."""
    global _current
    _current = runtime


def reset() -> None:
    """Forget the installed runtime."""
    global _current
    _current = None


def current() -> Runtime:
    """The installed runtime, built from the environment on first use."""
    global _current
    runtime = _current
    if runtime is not None:
        return runtime
    with _building:
        if _current is None:
            from stream_outbox.worker.settings import load_settings

            _current = Runtime.from_settings(load_settings())
        return _current


def delete_prefixed_keys(redis: Redis, prefix: str) -> int:
    """Delete every Redis key under ``prefix:`` (a deployment's, a demo's or a test run's)."""
    keys = list(redis.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        redis.delete(*keys[start : start + 500])
    return len(keys)
