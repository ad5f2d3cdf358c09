"""The inbound runner: claims pending inbox rows and applies each to the app's tables.

Rows are claimed in id order, a batch at a time (``FOR UPDATE SKIP LOCKED``, so several
runners share the inbox), and a channel's events are applied in the order they were
stored: a row waits while an earlier row of its channel is held by another runner or is
waiting for a retry. Each row is settled ``done``, ``ignored`` (the applier's reason: an
own echo, a channel the app does not know) or ``failed`` (a permanent error, or a
transient one past ``max_retries``); a transient error is retried with backoff.

The receiver of the same process wakes the runner as soon as it stores a row
(:meth:`Runner.wake`); otherwise it polls every ``poll_interval`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.outbox import InboxStatus
from stream_outbox.worker import metrics
from stream_outbox.worker.errors import PermanentError
from stream_outbox.worker.health import Heartbeat
from stream_outbox.worker.inbound.apply import apply_event
from stream_outbox.worker.inbound.inbox import Inbox, InboxRow, Settlement
from stream_outbox.worker.pipeline.retry import describe, retry_delay_ms

__all__ = ["ApplyEvent", "Runner", "default_apply", "status_of"]

log = logging.getLogger(__name__)

ApplyEvent = Callable[[Engine, Binding, dict[str, Any]], str]
_MEASURE_EVERY_S = 1.0


def status_of(outcome: str) -> InboxStatus:
    """How an applied row settles: ``ignored`` when the applier says nothing was to apply
    (an :class:`~stream_outbox.worker.inbound.apply.Outcome` marked ignored: an own echo,
    an unknown channel), else ``done``."""
    return InboxStatus.IGNORED if getattr(outcome, "ignored", False) else InboxStatus.DONE


def default_apply() -> ApplyEvent:
    """The inbound applier: :func:`stream_outbox.worker.inbound.apply.apply_event`."""
    return apply_event


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
        """Claim one batch and settle (or put off) each of its rows; how many were tried."""
        if self.heartbeat is not None:
            self.heartbeat.beat()
        now = time.monotonic()
        self._not_before = {i: at for i, at in self._not_before.items() if at > now}
        with self.engine.begin() as conn:
            rows = self.inbox.claim(conn, self.batch_size, skip=self._not_before.keys())
            settled: list[Settlement] = []
            put_off: set[str] = set()  # channels with a row put off: their later rows wait
            for row in rows:
                if row.cid is not None and row.cid in put_off:
                    continue
                settlement = self._apply(conn, row)
                if settlement is not None:
                    settled.append(settlement)
                    self._count(row, settlement)
                elif row.cid is not None:
                    put_off.add(row.cid)
            self.inbox.settle(conn, settled)
        return len(rows)

    def _apply(self, conn: Connection, row: InboxRow) -> Settlement | None:
        """Apply one row: how it settles, or None when it is left pending for a retry."""
        try:
            outcome = self.apply(self.engine, self.binding, row.payload)
        except PermanentError as exc:
            return Settlement(row.id, InboxStatus.FAILED, describe(exc))
        except Exception as exc:  # transient: the database, a lock, Stream
            error = describe(exc)
            attempts = self.inbox.count_attempt(conn, row.id, error)
            if attempts >= self.max_retries:
                return Settlement(row.id, InboxStatus.FAILED, error, counted=True)
            delay = retry_delay_ms(exc, attempts, **self._backoff) / 1000
            self._not_before[row.id] = time.monotonic() + delay
            metrics.INBOUND_APPLIED.labels("retried").inc()
            log.info("inbox row %d: %s; retry %d in %.1f s", row.id, error, attempts, delay)
            return None
        status = status_of(outcome)
        return Settlement(row.id, status, outcome if status is InboxStatus.IGNORED else None)

    @staticmethod
    def _count(row: InboxRow, settlement: Settlement) -> None:
        """The metrics of a settled row (lag: webhooks only, a catch-up's rows are old)."""
        metrics.INBOUND_APPLIED.labels(settlement.status.value).inc()
        if row.event_at is not None and not (row.webhook_id or "").startswith("sync:"):
            lag = (datetime.now(UTC) - row.event_at).total_seconds()
            metrics.INBOUND_LAG.observe(max(0.0, lag))
        if settlement.status is InboxStatus.FAILED:
            log.warning("inbox row %d (%s) failed: %s", row.id, row.event_type, settlement.error)
