"""The background threads that deliver webhooks, never blocking the call that caused them.

Events are handed over in the order calls changed the state; each goes to one of a few
worker threads chosen by its channel (``Delivery.key``), so a channel's events are sent
one after the other, in order, retries included, while a slow channel holds up only the
channels that share its worker. Each worker keeps its HTTP connection alive.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any

import requests

from stream_outbox.emulator.webhooks.delivery import (
    NETWORK_ERROR,
    REQUEST_TIMEOUT_SECONDS,
    TIMEOUT,
    Delivery,
    headers,
    retry_after,
    succeeded,
)
from stream_outbox.emulator.webhooks.faults import DEFAULT_HOLD_SECONDS, WebhookFault, WebhookFaults

log = logging.getLogger("stream_outbox.emulator.webhooks")

DEFAULT_WORKERS = 4
DEFAULT_BACKOFF_SECONDS = 0.25
_STOP = None


@dataclass
class SenderOptions:
    """Per-request timeout, first pause between attempts, and the total a delivery may take."""

    timeout: float = REQUEST_TIMEOUT_SECONDS
    backoff: float = DEFAULT_BACKOFF_SECONDS
    total: float = 15.0


class WebhookSender:
    """Delivers webhooks from daemon threads, started on the first event."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        options: SenderOptions | None = None,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        self.api_key = api_key
        self._secret = api_secret.encode()
        self.options = options or SenderOptions()
        self.faults = WebhookFaults()
        self._log: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._generation = 0
        self._queues: list[queue.Queue[tuple[int, Delivery] | None]] = [
            queue.Queue() for _ in range(workers)
        ]
        self._threads: list[threading.Thread] = []

    # ---- the caller's side ---------------------------------------------------

    def publish(self, deliveries: list[Delivery]) -> None:
        """Queue deliveries (returns at once)."""
        if not deliveries:
            return
        with self._lock:
            if not self._threads:
                self._start()
            self._pending += len(deliveries)
            generation = self._generation
        for delivery in deliveries:
            index = zlib.crc32(delivery.key.encode()) % len(self._queues)
            self._queues[index].put((generation, delivery))

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued event is delivered, dropped or given up on."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def add_fault(self, fault: WebhookFault) -> None:
        """Queue an injected fault."""
        with self._lock:
            self.faults.add(fault)

    def clear_faults(self) -> None:
        """Forget pending faults."""
        with self._lock:
            self.faults.clear()

    def configure(self, timeout: float | None = None, backoff: float | None = None) -> None:
        """Change the request timeout and the first pause between attempts."""
        with self._lock:
            if timeout is not None:
                self.options.timeout = float(timeout)
            if backoff is not None:
                self.options.backoff = float(backoff)

    def state(self) -> dict[str, Any]:
        """Pending faults, events in flight, options."""
        with self._lock:
            return {
                "faults": self.faults.listed(),
                "pending": self._pending,
                "timeout": self.options.timeout,
                "backoff": self.options.backoff,
                "total": self.options.total,
            }

    def attempts(self) -> list[dict[str, Any]]:
        """Every attempt made (and every event dropped), oldest first."""
        with self._lock:
            return [dict(entry) for entry in self._log]

    def reset(self, options: SenderOptions) -> None:
        """Forget faults and the log, take ``options``; events still queued are not sent."""
        with self._lock:
            self._generation += 1
            self.faults.clear()
            self._log.clear()
            self.options = options

    def close(self) -> None:
        """Stop the threads (events still queued are not sent)."""
        with self._lock:
            self._generation += 1
            threads, self._threads = self._threads, []
        for q in self._queues if threads else ():
            q.put(_STOP)
        for thread in threads:
            thread.join(self.options.timeout + 1)

    # ---- the workers' side ---------------------------------------------------

    def _start(self) -> None:
        for n, q in enumerate(self._queues):
            thread = threading.Thread(
                target=self._work, args=(q,), name=f"emulator-webhooks-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _work(self, inbox: queue.Queue[tuple[int, Delivery] | None]) -> None:
        session = requests.Session()
        held: tuple[int, Delivery] | None = None
        hold_seconds = DEFAULT_HOLD_SECONDS
        try:
            while True:
                try:
                    item = inbox.get(timeout=hold_seconds if held else None)
                except queue.Empty:
                    if held is not None:
                        self._send(session, *held)
                        held = None
                    continue
                if item is _STOP:
                    return
                generation, delivery = item
                fault = self._take_fault(generation, delivery)
                if fault is not None and fault.kind == "reorder" and held is None:
                    held, hold_seconds = item, fault.seconds or DEFAULT_HOLD_SECONDS
                    continue
                if fault is not None and fault.kind == "drop":
                    self._record(delivery, 0, "dropped")
                    self._done(1)
                elif fault is not None and fault.kind == "delay":
                    time.sleep(fault.seconds)
                    self._send(session, generation, delivery)
                elif fault is not None and fault.kind == "duplicate":
                    self._send(session, generation, delivery, settle=False)
                    self._send(session, generation, delivery)
                else:
                    self._send(session, generation, delivery)
                if held is not None:
                    self._send(session, *held)
                    held = None
        finally:
            session.close()

    def _take_fault(self, generation: int, delivery: Delivery) -> WebhookFault | None:
        with self._lock:
            if generation != self._generation:
                return None
            return self.faults.take(delivery.event_type)

    def _send(
        self, session: requests.Session, generation: int, delivery: Delivery, settle: bool = True
    ) -> None:
        """Every attempt of one delivery, as Stream's retry policy allows."""
        try:
            started = time.monotonic()
            attempt = 1
            while self._current(generation):
                outcome = self._attempt(session, delivery, attempt)
                if succeeded(outcome):
                    return
                pause = retry_after(
                    outcome,
                    attempt,
                    time.monotonic() - started,
                    self.options.backoff,
                    self.options.total,
                )
                if pause is None:
                    return
                time.sleep(pause)
                attempt += 1
        finally:
            if settle:
                self._done(1)

    def _attempt(self, session: requests.Session, delivery: Delivery, attempt: int) -> int | str:
        sent = time.time()
        outcome: int | str
        try:
            response = session.post(
                delivery.url,
                data=delivery.body,
                headers=headers(delivery, attempt, self.api_key, self._secret),
                timeout=self.options.timeout,
            )
            outcome = response.status_code
            response.close()
        except requests.Timeout:
            outcome = TIMEOUT
        except requests.RequestException as exc:
            log.debug("webhook to %s failed: %s", delivery.url, exc)
            outcome = NETWORK_ERROR
        self._record(delivery, attempt, outcome, sent)
        return outcome

    def _record(
        self, delivery: Delivery, attempt: int, outcome: int | str, sent: float | None = None
    ) -> None:
        with self._lock:
            self._log.append(
                {
                    "webhook_id": delivery.webhook_id,
                    "url": delivery.url,
                    "type": delivery.event_type,
                    "key": delivery.key,
                    "attempt": attempt,
                    "outcome": outcome,
                    "sent": sent if sent is not None else time.time(),
                    "answered": time.time(),
                }
            )

    def _current(self, generation: int) -> bool:
        with self._lock:
            return generation == self._generation

    def _done(self, count: int) -> None:
        with self._idle:
            self._pending -= count
            if self._pending <= 0:
                self._pending = 0
                self._idle.notify_all()
