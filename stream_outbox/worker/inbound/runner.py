"""The inbound runner: claims pending inbox rows and applies them to the app's tables.

Rows are claimed in id order, a batch at a time (``FOR UPDATE SKIP LOCKED``, so several
runners share the inbox), and a channel's events are applied in the order they were
stored: a row waits while an earlier row of its channel is held by another runner or is
waiting for a retry.

A batch is applied in the claim's transaction and settled with it, in one commit: what
its events read alike is read once (:func:`~stream_outbox.worker.inbound.apply.
read_ahead`: the channels' conversations, the users, the messages held with their map
rows), then its rows are applied in order in one savepoint. A row that raises is taken
out: the savepoint is rolled back, the rows before it are applied again, it alone is
settled ``failed`` (a permanent error, or a transient one past ``max_retries``) or put
off with backoff (a transient error; its channel's later rows wait with it), and the
rows after it go on. Constraints are checked as each statement runs (``SET CONSTRAINTS
ALL IMMEDIATE``), so a deferred one fails its row, not the batch's commit. Each row is
settled ``done``, ``ignored`` (the applier's reason: an own echo, a channel the app does
not know) or ``failed``; ``settled_at`` is when the batch's applying ended, just before
its commit.

The receiver of the same process wakes the runner as soon as it stores a row
(:meth:`Runner.wake`); otherwise it polls every ``poll_interval`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.outbox import InboxStatus
from stream_outbox.worker import metrics
from stream_outbox.worker.errors import PermanentError
from stream_outbox.worker.health import Heartbeat
from stream_outbox.worker.inbound.apply import Lookups, apply_on, mark_stream_origin, read_ahead
from stream_outbox.worker.inbound.inbox import Inbox, InboxRow, Settlement
from stream_outbox.worker.pipeline.retry import describe, retry_delay_ms

__all__ = ["ApplyEvent", "Runner", "default_apply", "status_of"]

log = logging.getLogger(__name__)

ApplyEvent = Callable[[Connection, Binding, dict[str, Any], Lookups], str]
_MEASURE_EVERY_S = 1.0
# A deferred constraint of the app's checked by each statement, in the row's savepoint
_CHECK_AS_WRITTEN = text("SET CONSTRAINTS ALL IMMEDIATE")


def status_of(outcome: str) -> InboxStatus:
    """How an applied row settles: ``ignored`` when the applier says nothing was to apply
    (an :class:`~stream_outbox.worker.inbound.apply.Outcome` marked ignored: an own echo,
    an unknown channel), else ``done``."""
    return InboxStatus.IGNORED if getattr(outcome, "ignored", False) else InboxStatus.DONE


def default_apply() -> ApplyEvent:
    """The inbound applier: :func:`stream_outbox.worker.inbound.apply.apply_on`."""
    return apply_on


class Runner:
    """Applies the inbox's pending rows until :meth:`stop`."""

    def __init__(
        self,
        engine: Engine,
        binding: Binding,
        apply: ApplyEvent | None = None,
        *,
        batch_size: int = 100,
        max_retries: int = 10,
        min_backoff_ms: int = 500,
        max_backoff_ms: int = 60_000,
        poll_interval: float = 1.0,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.engine, self.binding = engine, binding
        self.apply = apply or default_apply()
        self.inbox = Inbox(engine)
        self.batch_size, self.max_retries = batch_size, max_retries
        self._backoff = {"min_backoff_ms": min_backoff_ms, "max_backoff_ms": max_backoff_ms}
        self.poll_interval = poll_interval
        self.heartbeat = heartbeat
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._not_before: dict[int, float] = {}  # rows waiting for a retry: monotonic time
        self._measured = 0.0

    def wake(self) -> None:
        """A row was stored: claim now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """End :meth:`run` after the batch in hand."""
        self._stop.set()
        self._wake.set()  # ends an idle wait (the loop checks _stop first)

    def run(self) -> None:
        """Claim and apply until stopped; sleep when the inbox has nothing due."""
        while not self._stop.is_set():
            self._wake.clear()  # before the pass: a wake-up during it is not lost
            try:
                handled = self.run_once()
            except Exception:  # the database away: log, wait, go again
                log.exception("inbound runner: claiming failed; trying again")
                handled = 0
            self._measure()
            if handled < self.batch_size:
                self._wake.wait(self._idle_wait())
        log.info("inbound runner stopped")

    def _measure(self) -> None:
        """The pending rows and the oldest one's age, in the metrics (once a second)."""
        now = time.monotonic()
        if now - self._measured < _MEASURE_EVERY_S:
            return
        self._measured = now
        try:
            count, age = self.inbox.pending()
        except Exception:  # figures only: the next pass tries again
            return
        metrics.INBOX_PENDING.set(count)
        metrics.INBOX_OLDEST_PENDING_AGE.set(age)

    def _idle_wait(self) -> float:
        if not self._not_before:
            return self.poll_interval
        soonest = min(self._not_before.values()) - time.monotonic()
        return max(0.0, min(self.poll_interval, soonest))

    def run_once(self) -> int:
        """Claim one batch, apply it in the claim's transaction and settle (or put off)
        each of its rows; how many were tried."""
        if self.heartbeat is not None:
            self.heartbeat.beat()
        now = time.monotonic()
        self._not_before = {i: at for i, at in self._not_before.items() if at > now}
        with self.engine.begin() as conn:
            rows = self.inbox.claim(conn, self.batch_size, skip=self._not_before.keys())
            if not rows:
                return 0
            conn.execute(_CHECK_AS_WRITTEN)
            mark_stream_origin(conn)
            seen = read_ahead(conn, self.binding, rows)
            results = self._apply_together(conn, rows, seen)
            settled = [(row, one) for row, one in results if one is not None]
            self.inbox.settle(conn, [one for _, one in settled])
        for row, one in settled:  # committed: the lag is to the app's rows written
            self._count(row, one)
        return len(rows)

    def _apply_together(
        self, conn: Connection, rows: Sequence[InboxRow], seen: Lookups
    ) -> list[tuple[InboxRow, Settlement | None]]:
        """Apply ``rows`` in order in one savepoint; how each settles. When one raises,
        the savepoint is rolled back and the rows are taken again without it
        (:meth:`_without`)."""
        if not rows:
            return []
        outcomes: list[str] = []
        try:
            with conn.begin_nested():
                for row in rows:
                    outcomes.append(self.apply(conn, self.binding, row.payload, seen))
        except Exception as exc:  # rolled back
            if len(outcomes) == len(rows):  # the savepoint's end failed: the connection
                raise
            return self._without(conn, rows, len(outcomes), exc, seen)
        return [(row, _settlement(row, out)) for row, out in zip(rows, outcomes, strict=True)]

    def _without(
        self, conn: Connection, rows: Sequence[InboxRow], bad: int, exc: Exception, seen: Lookups
    ) -> list[tuple[InboxRow, Settlement | None]]:
        """``rows`` in order again after row ``bad`` raised ``exc``: the rows before it
        applied together, it failed or put off (:meth:`_failed`), the rows after it applied
        together, but for those of its channel when it is put off."""
        before = self._apply_together(conn, rows[:bad], seen)
        settlement = self._failed(conn, rows[bad], exc)
        after, cid = rows[bad + 1 :], rows[bad].cid
        if settlement is None and cid is not None:  # its channel's later rows wait for it
            after = [row for row in after if row.cid != cid]
        return [*before, (rows[bad], settlement), *self._apply_together(conn, after, seen)]

    def _failed(self, conn: Connection, row: InboxRow, exc: Exception) -> Settlement | None:
        """How a row whose applying raised ``exc`` settles: failed (a permanent error, or a
        transient one past the retries), or None when it is left pending for a retry."""
        if isinstance(exc, PermanentError):
            return Settlement(row.id, InboxStatus.FAILED, describe(exc))
        error = describe(exc)  # transient: the database, a lock, Stream
        attempts = self.inbox.count_attempt(conn, row.id, error)
        if attempts >= self.max_retries:
            return Settlement(row.id, InboxStatus.FAILED, error, counted=True)
        delay = retry_delay_ms(exc, attempts, **self._backoff) / 1000
        self._not_before[row.id] = time.monotonic() + delay
        metrics.INBOUND_APPLIED.labels("retried").inc()
        log.info("inbox row %d: %s; retry %d in %.1f s", row.id, error, attempts, delay)
        return None

    @staticmethod
    def _count(row: InboxRow, settlement: Settlement) -> None:
        """The metrics of a settled row (lag: webhooks only, a catch-up's rows are old)."""
        metrics.INBOUND_APPLIED.labels(settlement.status.value).inc()
        if row.event_at is not None and not (row.webhook_id or "").startswith("sync:"):
            lag = (datetime.now(UTC) - row.event_at).total_seconds()
            metrics.INBOUND_LAG.observe(max(0.0, lag))
        if settlement.status is InboxStatus.FAILED:
            log.warning("inbox row %d (%s) failed: %s", row.id, row.event_type, settlement.error)


def _settlement(row: InboxRow, outcome: str) -> Settlement:
    """How a row the applier took settles: done, or ignored with the reason."""
    status = status_of(outcome)
    return Settlement(row.id, status, outcome if status is InboxStatus.IGNORED else None)
