"""The relay: drains the outbox into Dramatiq.

It LISTENs on the outbox's NOTIFY channel and polls as a fallback, claims due
rows in batches (SKIP LOCKED, so several relays share the work), coalesces them
per target, enqueues one message per job and leaves the rows ``dispatched``.
Rows dispatched longer than the visibility timeout without an outcome (a killed
worker, a Redis restart) go back to pending and are dispatched again.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from typing import Any

import dramatiq
import psycopg
from dramatiq.errors import ActorNotFound
from sqlalchemy.engine import make_url

from stream_outbox.app_hooks.outbox import NOTIFY_CHANNEL
from stream_outbox.worker import metrics
from stream_outbox.worker.pipeline.job_runner import PRIORITY_ACTOR_NAME
from stream_outbox.worker.pipeline.jobs import Job, plan_jobs
from stream_outbox.worker.store.repository import OutboxRepository, OutboxRow

__all__ = ["Relay"]

log = logging.getLogger(__name__)

MERGE_EVERY = 60.0  # seconds between merges of the rollups' closed minutes


class Relay:
    """One relay loop; :meth:`stop` (or a signal handler calling it) ends it cleanly."""

    def __init__(
        self,
        repo: OutboxRepository,
        actor: dramatiq.Actor[Any, Any],
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        visibility_timeout: float = 300.0,
        users_per_job: int = 100,
        conversations_per_job: int = 50,
        listen: bool = True,
        priority_actor: dramatiq.Actor[Any, Any] | None = None,
    ) -> None:
        self.repo = repo
        self.actor = actor
        # The priority actor declared beside ``actor`` (else priority rows go to ``actor``)
        self.priority_actor = priority_actor or _priority_actor_of(actor)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.visibility_timeout = visibility_timeout
        self.users_per_job = users_per_job
        self.conversations_per_job = conversations_per_job
        self.listen = listen  # False: poll only (benchmarks compare the two)
        self._stop = threading.Event()
        self._last_sweep = 0.0
        self._last_merge = -MERGE_EVERY

    def stop(self) -> None:
        """Ask the loop to finish its current batch and return."""
        self._stop.set()

    def run_once(self) -> int:
        """Claim, enqueue and settle one batch, priority rows first; returns the number of
        rows dispatched."""
        urgent = self.repo.claim(self.batch_size, priority=True)
        if urgent:  # one conversation a job: none waits for another's history
            self._send(urgent, plan_jobs(urgent, self.users_per_job, 1), self.priority_actor)
        rows = self.repo.claim(self.batch_size)
        if rows:
            jobs = plan_jobs(rows, self.users_per_job, self.conversations_per_job)
            self._send(rows, jobs, self.actor)
        return len(urgent) + len(rows)

    def _send(
        self, rows: list[OutboxRow], jobs: list[Job], actor: dramatiq.Actor[Any, Any]
    ) -> None:
        """Enqueue the jobs of claimed rows; if an enqueue fails, release the rows not sent."""
        sent: list[int] = []
        try:
            for job in jobs:
                actor.send(job.kind, list(job.target_ids), list(job.row_ids), job.payload)
                sent += job.row_ids
        except Exception:
            unsent = [row.id for row in rows if row.id not in set(sent)]
            self.repo.release(unsent)
            raise
        metrics.RELAY_DISPATCHED.inc(len(rows))
        log.debug("dispatched %d rows as %d jobs to %s", len(rows), len(jobs), actor.actor_name)

    def sweep(self) -> int:
        """Send stale dispatched rows back to pending; refresh the outbox gauges; once a
        minute, merge the rollups' shards of closed minutes."""
        revived = self.repo.redispatch_stale(self.visibility_timeout)
        if revived:
            log.warning("%d dispatched rows had no outcome in time: dispatching again", revived)
        stats = self.repo.stats()
        metrics.OUTBOX_PENDING.set(stats.pending)
        metrics.OUTBOX_FAILED.set(stats.failed)
        metrics.OUTBOX_OLDEST_PENDING_AGE.set(stats.oldest_pending_age)
        self._last_sweep = time.monotonic()
        if self._last_sweep - self._last_merge >= MERGE_EVERY:
            self.repo.merge_rollup_shards()
            self._last_merge = self._last_sweep
        return revived

    def drain(self) -> int:
        """Dispatch until nothing is due; returns the rows dispatched."""
        total = 0
        while not self._stop.is_set():
            count = self.run_once()
            total += count
            if count < self.batch_size:
                return total
        return total

    def run(self) -> None:
        """Loop until stopped: drain, sweep now and then, wait for a NOTIFY or the poll interval."""
        listener = _Listener(self.repo, enabled=self.listen)
        log.info("relay started (listen=%s)", listener.enabled)
        try:
            while not self._stop.is_set():
                try:
                    self.drain()
                    if time.monotonic() - self._last_sweep >= min(5.0, self.visibility_timeout / 4):
                        self.sweep()
                except Exception:
                    log.exception("relay pass failed; retrying")
                    self._stop.wait(self.poll_interval)
                    listener.reconnect()
                    continue
                listener.wait(self.poll_interval, self._stop)
        finally:
            listener.close()
            log.info("relay stopped")


class _Listener:
    """LISTEN on the outbox channel through a dedicated psycopg connection (PostgreSQL only)."""

    def __init__(self, repo: OutboxRepository, *, enabled: bool = True) -> None:
        url = repo.engine.url
        self.enabled = enabled and url.get_backend_name() == "postgresql"
        self._conninfo = _conninfo(url.render_as_string(hide_password=False))
        self._conn: psycopg.Connection[Any] | None = None
        self.reconnect()

    def reconnect(self) -> None:
        self.close()
        if not self.enabled:
            return
        try:
            self._conn = psycopg.connect(self._conninfo, autocommit=True)
            self._conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except psycopg.Error as exc:
            log.warning("LISTEN unavailable (%s); polling only", type(exc).__name__)
            self._conn = None

    def wait(self, timeout: float, stop: threading.Event) -> None:
        """Return on a notification, after ``timeout`` seconds, or soon after ``stop`` is set."""
        conn = self._conn
        if conn is None:
            stop.wait(timeout)
            return
        deadline = time.monotonic() + timeout
        try:
            while not stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                ready, _, _ = select.select([conn.fileno()], [], [], min(remaining, 0.25))
                if ready:
                    notified = [n.channel for n in conn.notifies(timeout=0)]  # all: one wake-up
                    if notified:
                        return
        except (psycopg.Error, OSError, ValueError):
            self.reconnect()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def _priority_actor_of(actor: dramatiq.Actor[Any, Any]) -> dramatiq.Actor[Any, Any]:
    try:
        found: dramatiq.Actor[Any, Any] = actor.broker.get_actor(PRIORITY_ACTOR_NAME)
    except ActorNotFound:
        return actor
    return found


def _conninfo(sqlalchemy_url: str) -> str:
    url = make_url(sqlalchemy_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
