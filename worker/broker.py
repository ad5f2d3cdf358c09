"""The Dramatiq broker and the reconcile actor, declared on a broker handed in."""

from __future__ import annotations

import logging
import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import compute_backoff
from dramatiq.middleware import CurrentMessage, Retries

from worker import metrics, runtime
from worker.errors import PermanentStreamError, StreamError
from worker.reconcile import reconcile
from worker.settings import Settings

__all__ = ["ACTOR_NAME", "build_broker", "declare_actors", "run_job"]

ACTOR_NAME = "reconcile"
log = logging.getLogger(__name__)


def build_broker(settings: Settings, **options: Any) -> RedisBroker:
    """A Redis broker with our retry policy and the current-message middleware."""
    options.setdefault("namespace", f"{settings.redis_prefix}:dramatiq")
    broker = RedisBroker(url=settings.redis_url, **options)  # type: ignore[no-untyped-call]
    configure_middleware(broker, settings)
    return broker


def configure_middleware(broker: dramatiq.Broker, settings: Settings) -> None:
    """Set retry limits and backoffs from the settings; add CurrentMessage."""
    for middleware in broker.middleware:
        if isinstance(middleware, Retries):
            middleware.max_retries = settings.max_retries
            middleware.min_backoff = settings.min_backoff_ms
            middleware.max_backoff = settings.max_backoff_ms
    if not any(isinstance(m, CurrentMessage) for m in broker.middleware):
        broker.add_middleware(CurrentMessage())


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


def run_job(kind: str, target_ids: list[str], row_ids: list[int], payload: dict[str, Any]) -> None:
    """The actor: reconcile the targets under their locks, then settle the outbox rows.

    A permanent error fails the rows at once; a transient one retries through
    Dramatiq with backoff (a 429 waits for Stream's reset) until the budget is
    spent, and then fails the rows with the last error. Rows never stay open.
    """
    rt = runtime.current()
    started = time.perf_counter()
    calls_before = rt.gateway.calls
    retry: dramatiq.Retry | None = None
    try:
        outcome, detail = _reconcile_and_settle(rt, kind, target_ids, row_ids, payload)
    except PermanentStreamError as exc:
        outcome, detail = "failed", exc.describe()
        rt.repo.mark_failed(row_ids, detail)
    except Exception as exc:  # transient Stream errors, busy targets, database hiccups
        outcome, detail, retry = _retry_or_fail(rt, row_ids, exc)
    elapsed = time.perf_counter() - started
    metrics.RECONCILE_SECONDS.labels(kind).observe(elapsed)
    metrics.RECONCILES.labels(kind, outcome).inc()
    log.info(
        "reconcile %s %s: %s (%s) rows=%d stream_calls=%d %.1f ms",
        kind,
        _short(target_ids),
        outcome,
        detail,
        len(row_ids),
        rt.gateway.calls - calls_before,
        elapsed * 1000,
        extra={"action": "reconcile", "kind": kind, "rows": len(row_ids), "outcome": outcome},
    )
    if retry is not None:
        raise retry


def _reconcile_and_settle(
    rt: runtime.Runtime,
    kind: str,
    target_ids: list[str],
    row_ids: list[int],
    payload: dict[str, Any],
) -> tuple[str, str]:
    with rt.locks.hold(kind, target_ids):
        if kind == "conversation" and row_ids and not rt.repo.unsettled(row_ids):
            return "done", "already in step (settled by an earlier reconcile)"
        result = reconcile(rt, kind, target_ids, payload)
    rows_by_target: dict[str, list[int]] = payload.get("rows", {})
    failed_rows: set[int] = set()
    for target_id, error in result.failed.items():
        rows = rows_by_target.get(target_id, [])
        rt.repo.mark_failed(rows, error)
        failed_rows.update(rows)
    done = [row for row in row_ids if row not in failed_rows]
    rt.repo.mark_done(done + [row for row in result.settles if row not in set(done)])
    return ("partial" if result.failed else "done"), result.outcome


def _retry_or_fail(
    rt: runtime.Runtime, row_ids: list[int], exc: Exception
) -> tuple[str, str, dramatiq.Retry | None]:
    detail = exc.describe() if isinstance(exc, StreamError) else f"{type(exc).__name__}: {exc}"
    message = CurrentMessage.get_current_message()
    retries = int(message.options.get("retries", 0)) if message is not None else 0
    if retries >= rt.settings.max_retries:
        rt.repo.mark_failed(row_ids, f"after {retries + 1} attempts: {detail}")
        return "failed", detail, None
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        delay_ms = int(retry_after * 1000) + 50
    else:
        _, delay_ms = compute_backoff(
            retries, factor=rt.settings.min_backoff_ms, max_backoff=rt.settings.max_backoff_ms
        )
    rt.repo.mark_retrying(row_ids, detail, delay_ms / 1000)
    return "retry", detail, dramatiq.Retry(detail, delay=delay_ms)


def _short(ids: list[str]) -> str:
    return ",".join(ids[:3]) + (f",... ({len(ids)})" if len(ids) > 3 else "")
