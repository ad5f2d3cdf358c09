"""The actors' body: reconcile a job's targets under their locks, then settle their rows.

Declared as actors on a broker by :func:`.broker.declare_actors`: ``reconcile`` for the
backlog, ``reconcile_priority`` (a queue of its own, served first) for the rows an app
asked to go first. The retry decision they apply is :mod:`.retry`; how a job ended is a
:class:`JobOutcome`.
"""

from __future__ import annotations

import logging
import time
from enum import StrEnum
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from stream_outbox.worker import metrics, runtime
from stream_outbox.worker.errors import BudgetExhausted, PermanentError, RetryableError
from stream_outbox.worker.pipeline.jobs import Job, batch_job, job_targets, plan_jobs
from stream_outbox.worker.pipeline.middleware import CurrentBroker
from stream_outbox.worker.pipeline.retry import describe, retry_delay_ms
from stream_outbox.worker.store.locks import TargetBusy
from stream_outbox.worker.sync import Result, reconcile

__all__ = ["ACTOR_NAME", "PRIORITY_ACTOR_NAME", "JobOutcome", "run_job", "run_priority_job"]

ACTOR_NAME = "reconcile"
PRIORITY_ACTOR_NAME = "reconcile_priority"
log = logging.getLogger(__name__)


class JobOutcome(StrEnum):
    """How a job ended: the ``outcome`` of its log line and of the reconciles metric."""

    DONE = "done"  # every target in step (or settled before by another job)
    PARTIAL = "partial"  # some targets failed on their own; the others are done
    FAILED = "failed"  # the rows failed: a permanent error, or the retries spent
    RETRY = "retry"  # a transient error: Dramatiq runs the job again after a delay
    CONTINUED = "continued"  # a batch stopped part-way; the rest went to a new job


def run_job(kind: str, target_ids: list[str], row_ids: list[int], payload: dict[str, Any]) -> None:
    """The actor: reconcile the targets under their locks, then settle the outbox rows.

    A permanent error fails the rows at once; a transient one retries through
    Dramatiq with backoff (a 429 waits for Stream's reset) until the budget is
    spent, and then fails the rows with the last error. Rows never stay open.
    """
    rt = runtime.current()
    started = time.perf_counter()
    calls_before = rt.gateway.thread_calls()  # this job's own: it runs on this thread
    retry: dramatiq.Retry | None = None
    try:
        outcome, detail = _reconcile_and_settle(rt, kind, target_ids, row_ids, payload)
    except _Leftover as stop:  # a conversation batch stopped before some of its targets
        outcome, detail, retry = _continue_or_retry(rt, stop)
    except BudgetExhausted as exc:  # no call was made: the job goes again, no retry spent
        outcome, detail = _again_later(
            rt, Job(kind, tuple(target_ids), tuple(row_ids), payload), exc
        )
    except PermanentError as exc:
        outcome, detail = JobOutcome.FAILED, exc.describe()
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
        rt.gateway.thread_calls() - calls_before,
        elapsed * 1000,
        extra={"action": "reconcile", "kind": kind, "rows": len(row_ids), "outcome": outcome},
    )
    if retry is not None:
        raise retry


def run_priority_job(
    kind: str, target_ids: list[str], row_ids: list[int], payload: dict[str, Any]
) -> None:
    """The priority actor: :func:`run_job`, then the rows its targets got meanwhile (a
    long history's continuation) taken from the backlog into a priority job of their own,
    so a conversation asked for goes all the way first."""
    run_job(kind, target_ids, row_ids, payload)
    if kind != "conversation" or not row_ids:
        return
    rt = runtime.current()
    newer = rt.repo.take_newer(kind, target_ids, after=max(row_ids))
    if newer:
        actor = (CurrentBroker.get() or dramatiq.get_broker()).get_actor(PRIORITY_ACTOR_NAME)
        for job in plan_jobs(newer, conversations_per_job=1):
            actor.send(job.kind, list(job.target_ids), list(job.row_ids), job.payload)


def _reconcile_and_settle(
    rt: runtime.Runtime,
    kind: str,
    target_ids: list[str],
    row_ids: list[int],
    payload: dict[str, Any],
) -> tuple[JobOutcome, str]:
    if kind == "conversation":
        targets = job_targets(target_ids, row_ids, payload)
        if any(target_payload.get("deleted") for _, target_payload in targets.values()):
            return _gathering(rt, kind, targets, row_ids, event="delete")
        return _batch(rt, kind, targets, row_ids)
    if kind == "user":
        rows: dict[str, list[int]] = payload.get("rows", {})
        users: dict[str, tuple[list[int], dict[str, Any]]] = {
            target_id: (rows.get(target_id, []), {}) for target_id in target_ids
        }
        return _gathering(rt, kind, users, row_ids)
    with rt.locks.hold(kind, target_ids):
        if row_ids and not _retried() and not rt.repo.open_of(row_ids):
            return JobOutcome.DONE, _ALREADY_SETTLED  # a duplicate (a job dispatched again)
        result = reconcile(rt, kind, {target_id: payload for target_id in target_ids})
    rows_by_target: dict[str, list[int]] = payload.get("rows", {})
    outcome = _settle(rt, row_ids, rows_by_target, result)
    if result.error is not None:
        raise result.error
    return outcome


# Batches whose Stream calls are scarce gather a burst's targets, 100 a call: users
# (UpdateUsers, 300 a minute; their retirements, 60) and deleted conversations
# (DeleteChannels, 60). A burst's jobs wait for the end of a window of this many seconds;
# the first of each window takes along the targets of the others (and of rows come
# meanwhile)
_GATHER = 0.1
# The targets a gathering batch holds at most: UpdateUsers and DeleteChannels each take 100
_GATHER_AT_MOST = 100
# How long after such a job the next is of the same burst; the longest the others of a
# window wait for its first to end (should it die)
_BURST = 1.0


def _gathering(
    rt: runtime.Runtime,
    kind: str,
    targets: dict[str, tuple[list[int], dict[str, Any]]],
    row_ids: list[int],
    *,
    event: str | None = None,
) -> tuple[JobOutcome, str]:
    """A batch that, in a burst, takes along other jobs' open targets of ``kind`` (with a
    row of ``event``, if given) up to 100 in all; a lone job goes at once."""
    room = _GATHER_AT_MOST - len(targets)
    burst = f"{kind}:{event or 'any'}"
    if room <= 0 or _retried() or _priority() or not _in_a_burst(rt, burst):
        return _batch(rt, kind, targets, row_ids)
    window = _gathering_window(rt, burst)
    if window is None:  # another job of this window took this one's targets along
        return _batch(rt, kind, targets, row_ids)
    try:
        others = rt.repo.open_targets(kind, room, exclude=list(targets), event=event)
        return _batch(rt, kind, targets, row_ids, others)
    finally:
        rt.redis.delete(window)


def _priority() -> bool:
    """Whether this job is the priority actor's (it waits for no window)."""
    message = CurrentMessage.get_current_message()
    return message is not None and message.actor_name == PRIORITY_ACTOR_NAME


def _in_a_burst(rt: runtime.Runtime, burst: str) -> bool:
    """Whether another job of ``burst`` started less than :data:`_BURST` ago."""
    key = f"{rt.settings.redis_prefix}:burst:{burst}"
    return rt.redis.set(key, 1, px=int(_BURST * 1000), get=True) is not None


def _gathering_window(rt: runtime.Runtime, burst: str) -> str | None:
    """Wait for the end of the current window (the same instants in every process). The
    window's first job gets its key, to delete when done; the others wait until it is
    done (their targets taken along, most likely) and get None."""
    now = time.time()
    window = int(now / _GATHER) + 1
    time.sleep(max(0.0, window * _GATHER - now))
    key = f"{rt.settings.redis_prefix}:gather:{burst}:{window}"
    if rt.redis.set(key, 1, nx=True, px=int(_BURST * 1000)):
        return key
    deadline = time.monotonic() + _BURST
    while rt.redis.exists(key) and time.monotonic() < deadline and not rt.stopping.is_set():
        time.sleep(0.01)
    return None


_ALREADY_SETTLED = "already in step (settled by an earlier reconcile)"
# How long a batch waits, in all, for targets another job holds
_BUSY_WAIT = 2.0


class _Leftover(RetryableError):
    """A batch stopped by ``error`` before the targets in ``left``."""

    def __init__(
        self,
        kind: str,
        error: Exception,
        left: dict[str, tuple[list[int], dict[str, Any]]],
        progressed: bool,
    ) -> None:
        super().__init__(str(error))
        self.kind = kind
        self.error = error
        self.left = left
        self.progressed = progressed  # some other target of the job got its outcome


def _batch(
    rt: runtime.Runtime,
    kind: str,
    targets: dict[str, tuple[list[int], dict[str, Any]]],
    row_ids: list[int],
    others: dict[str, tuple[list[int], dict[str, Any]]] | None = None,
) -> tuple[JobOutcome, str]:
    """Reconcile a batch of users or conversations in rounds: each round takes the locks
    of the targets free at that moment and reconciles those (whose rows are still open)
    together; the busy ones wait for a later round, for :data:`_BUSY_WAIT` in all.

    Never waiting for every lock at once, a batch cannot be starved by the short jobs
    that keep taking one or two of its targets. Targets a transient error or a lock held
    too long leaves undone raise :class:`_Leftover`.

    ``others``: other jobs' targets with open rows (read before the targets' state), taken
    along in the first round when free and settled with the batch, so their own jobs find
    nothing left to do; left to those jobs when busy or when the batch stops.
    """
    rows_by_target = {target_id: rows for target_id, (rows, _) in targets.items()}
    waiting = list(targets)
    outcomes: list[tuple[JobOutcome, str]] = []
    reached = 0
    deadline = time.monotonic() + _BUSY_WAIT
    delay = 0.005
    others = dict(others or {})
    while True:
        with rt.locks.hold_free(kind, waiting + list(others)) as held:
            along = {target: others[target] for target in held if target in others}
            mine = {target_id: targets[target_id] for target_id in held if target_id not in along}
            todo = {**_still_open(rt, mine), **_still_open(rt, along, retried=False)}
            result = reconcile(rt, kind, todo) if todo else None
        others = {}  # the first round only
        rows_by_target.update({target_id: rows for target_id, (rows, _) in along.items()})
        taken = set(held)
        waiting = [target_id for target_id in waiting if target_id not in taken]
        error: Exception | None = None
        left = list(waiting)
        if result is not None:  # settled once the locks are released (and were still ours)
            row_ids = row_ids + [row for rows, _ in along.values() for row in rows]
            outcomes.append(_settle(rt, row_ids, rows_by_target, result, only=list(todo)))
            reached += len(todo) - len(result.unreached)
            unreached = [target_id for target_id in result.unreached if target_id in targets]
            error, left = result.error, unreached + waiting
        if error is None and waiting and (time.monotonic() >= deadline or rt.stopping.is_set()):
            error = TargetBusy(f"{kind} target busy: {', '.join(waiting[:3])}")
        if error is not None:
            left_targets = {target_id: targets[target_id] for target_id in left}
            raise _Leftover(kind, error, left_targets, progressed=reached > 0)
        if not waiting:
            break
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.2)
    if not outcomes:
        return JobOutcome.DONE, _ALREADY_SETTLED
    partial = any(status == JobOutcome.PARTIAL for status, _ in outcomes)
    status = JobOutcome.PARTIAL if partial else JobOutcome.DONE
    return status, "; ".join(detail for _, detail in outcomes)


def _retried() -> bool:
    """Whether this job is a retry: its attempt before may have overlapped another job on
    the same targets (a lock lost while held, :class:`LockLost`) and written after that
    job's read, so it reconciles again whoever settled its rows meanwhile."""
    message = CurrentMessage.get_current_message()
    return message is not None and int(message.options.get("retries", 0)) > 0


def _still_open(
    rt: runtime.Runtime,
    targets: dict[str, tuple[list[int], dict[str, Any]]],
    *,
    retried: bool | None = None,
) -> dict[str, dict[str, Any]]:
    """The targets (with their payloads) with open rows, or with no rows at all; all of
    them in a retry (``retried``, by default :func:`_retried`)."""
    if _retried() if retried is None else retried:
        return {target_id: target_payload for target_id, (_, target_payload) in targets.items()}
    open_rows = set(rt.repo.open_of([row for rows, _ in targets.values() for row in rows]))
    return {
        target_id: target_payload
        for target_id, (rows, target_payload) in targets.items()
        if not rows or open_rows.intersection(rows)
    }


def _settle(
    rt: runtime.Runtime,
    row_ids: list[int],
    rows_by_target: dict[str, list[int]],
    result: Result,
    only: list[str] | None = None,
) -> tuple[JobOutcome, str]:
    """Record the outcome of ``result``'s targets (``only`` these, when given) on their rows.

    Rows of failed targets fail; rows of targets a transient error left unreached stay
    open (the caller retries them); the others, and the other open rows the reconcile
    brought in step, are done.
    """
    failed_rows: set[int] = set()
    for target_id, error in result.failed.items():
        rows = rows_by_target.get(target_id, [])
        rt.repo.mark_failed(rows, error)
        failed_rows.update(rows)
    if only is not None:
        mine = {row for target_id in only for row in rows_by_target.get(target_id, [])}
        row_ids = [row for row in row_ids if row in mine]
    left = {row for target_id in result.unreached for row in rows_by_target.get(target_id, [])}
    done = [row for row in row_ids if row not in failed_rows and row not in left]
    done_set = set(done)
    rt.repo.mark_done(done + [row for row in result.settles if row not in done_set])
    return (JobOutcome.PARTIAL if result.failed else JobOutcome.DONE), result.summary


def _continue_or_retry(
    rt: runtime.Runtime, stop: _Leftover
) -> tuple[JobOutcome, str, dramatiq.Retry | None]:
    """The targets a batch left undone: a new job with a fresh retry budget when the batch
    got somewhere (a busy Stream should not spend the budget of targets it never tried),
    else a retry of this job like any transient error."""
    rows = [row for rows, _ in stop.left.values() for row in rows]
    if isinstance(stop.error, BudgetExhausted):
        return (*_again_later(rt, batch_job(stop.kind, stop.left), stop.error), None)
    if not stop.progressed:
        return _retry_or_fail(rt, rows, stop.error)
    detail = describe(stop.error)
    delay_ms = _delay_ms(rt, stop.error, retries=0)
    rt.repo.mark_retrying(rows, detail, delay_ms / 1000)
    job = batch_job(stop.kind, stop.left)
    message = CurrentMessage.get_current_message()  # the same actor: priority stays priority
    name = message.actor_name if message is not None else ACTOR_NAME
    actor = (CurrentBroker.get() or dramatiq.get_broker()).get_actor(name)
    actor.send_with_options(
        args=(job.kind, list(job.target_ids), list(job.row_ids), job.payload), delay=delay_ms
    )
    return JobOutcome.CONTINUED, f"{detail}; {len(stop.left)} left to a new job", None


def _again_later(rt: runtime.Runtime, job: Job, exc: BudgetExhausted) -> tuple[JobOutcome, str]:
    """Send the job again, due when the budget has slots, with this attempt's retry count
    (a wait for the budget is not a failure: a busy budget must not fail rows)."""
    detail = describe(exc)
    delay_ms = _delay_ms(rt, exc, retries=0)
    rt.repo.mark_retrying(list(job.row_ids), detail, delay_ms / 1000)
    message = CurrentMessage.get_current_message()  # the same actor: priority stays priority
    name = message.actor_name if message is not None else ACTOR_NAME
    retries = int(message.options.get("retries", 0)) if message is not None else 0
    actor = (CurrentBroker.get() or dramatiq.get_broker()).get_actor(name)
    actor.send_with_options(
        args=(job.kind, list(job.target_ids), list(job.row_ids), job.payload),
        delay=delay_ms,
        retries=retries,
    )
    return JobOutcome.CONTINUED, f"{detail}; sent again, no retry spent"


def _retry_or_fail(
    rt: runtime.Runtime, row_ids: list[int], exc: Exception
) -> tuple[JobOutcome, str, dramatiq.Retry | None]:
    detail = describe(exc)
    message = CurrentMessage.get_current_message()
    retries = int(message.options.get("retries", 0)) if message is not None else 0
    if retries >= rt.settings.max_retries:
        rt.repo.mark_failed(row_ids, f"after {retries + 1} attempts: {detail}")
        return JobOutcome.FAILED, detail, None
    delay_ms = _delay_ms(rt, exc, retries)
    rt.repo.mark_retrying(row_ids, detail, delay_ms / 1000)
    return JobOutcome.RETRY, detail, dramatiq.Retry(detail, delay=delay_ms)


def _delay_ms(rt: runtime.Runtime, exc: Exception, retries: int) -> int:
    return retry_delay_ms(
        exc,
        retries,
        min_backoff_ms=rt.settings.min_backoff_ms,
        max_backoff_ms=rt.settings.max_backoff_ms,
    )


def _short(ids: list[str]) -> str:
    return ",".join(ids[:3]) + (f",... ({len(ids)})" if len(ids) > 3 else "")
