"""A Redis broker whose idle consumers are woken through pub/sub instead of polling.

Dramatiq's Redis consumer polls an empty queue and sleeps between polls with an
exponential backoff up to the worker timeout, so an idle worker (timeout 100 ms)
picked up a new message 40-50 ms late on average. Here every direct enqueue also
PUBLISHes the queue's name, and an idle consumer blocks on that channel instead of
sleeping: pickup takes about a millisecond. The poll stays as the fallback, so a
missed wake-up costs at most one worker timeout and never loses a message.

Its consumers also hand back, when closed, the messages they fetched from Redis but
had not yet passed to the worker. Dramatiq's consumer thread leaves its loop between
two messages of one fetch when the worker stops, and Dramatiq requeues only those
already on the worker's queues: the rest stayed in the stopped worker's ``acks`` set,
out of every other worker's reach until Dramatiq's maintenance requeues a dead
worker's messages (after its heartbeat timeout, and only now and then).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import dq_name
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.message import Message

__all__ = ["WakingRedisBroker"]

log = logging.getLogger(__name__)

# A busy consumer does not read its wake-ups; it discards them at most this often
# (seconds) so that Redis does not buffer them without bound.
_BUSY_DRAIN_INTERVAL = 1.0
# At most this many buffered wake-ups are read in one drain.
_DRAIN_LIMIT = 10_000
# ValueError: the subscription's socket closed under a wait (the broker closed while a
# stopping worker's consumer still waited for a wake-up), as redis-py reports it
_PUBSUB_ERRORS = (redis.ConnectionError, redis.TimeoutError, ValueError)


class WakingRedisBroker(RedisBroker):
    """A RedisBroker that publishes on ``wake_channel`` whenever it enqueues a ready message.

    Its consumers of ready queues wait on that channel while idle; delay queues keep
    Dramatiq's plain polling consumer.
    """

    def __init__(self, *, wake_channel: str, **options: Any) -> None:
        super().__init__(**options)  # type: ignore[no-untyped-call]
        self.wake_channel = wake_channel

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        """Enqueue like RedisBroker, then wake the queue's idle consumers (best effort)."""
        enqueued: Message[Any] = super().enqueue(message, delay=delay)
        if delay is None:
            try:
                self.client.publish(self.wake_channel, enqueued.queue_name)
            except Exception as exc:  # the poll picks the message up anyway
                log.debug("wake-up publish on %s failed: %s", self.wake_channel, exc)
        return enqueued

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        """A waking consumer for a ready queue; Dramatiq's polling one for a delay queue
        (both hand their unread messages back at close)."""
        if dq_name(queue_name) == queue_name:
            return _HandingBackConsumer(  # type: ignore[no-untyped-call]
                self, queue_name, prefetch, timeout
            )
        return _WakingConsumer(self, queue_name, prefetch, timeout)


class _HandingBackConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, which requeues at close the messages it fetched but
    has not yet returned (its ``message_cache``), instead of leaving them in its acks."""

    def close(self) -> None:
        """Requeue the fetched messages not yet returned (best effort), then close."""
        unread, self.message_cache = self.message_cache, []
        if any(unread):
            try:
                ids = [Message.decode(data).options["redis_message_id"] for data in unread if data]
                self.broker.do_requeue(self.queue_name, *ids)
            except (redis.RedisError, DecodeError) as exc:  # maintenance requeues them later
                log.warning("could not requeue %d fetched messages: %s", len(unread), exc)
        super().close()


class _WakingConsumer(_HandingBackConsumer):
    """A Redis consumer that waits for a wake-up (or ``timeout`` ms) instead of sleeping.

    The base consumer is given a timeout of 0, so its ``__next__`` never sleeps; this
    one then waits on the wake channel, or, when it holds as many messages as it may
    prefetch, until an ack or nack frees a slot.
    """

    def __init__(
        self, broker: WakingRedisBroker, queue_name: str, prefetch: int, timeout: int
    ) -> None:
        super().__init__(broker, queue_name, prefetch, 0)  # type: ignore[no-untyped-call]
        self.wait_ms = timeout
        self._wake_names: set[str | bytes] = {queue_name, queue_name.encode()}
        self._slot_freed = threading.Event()
        self._last_drain = time.monotonic()
        self._pubsub = broker.client.pubsub(ignore_subscribe_messages=True)
        try:
            # Subscribed before the first fetch: a publish after it is never missed.
            self._pubsub.subscribe(broker.wake_channel)
        except _PUBSUB_ERRORS as exc:
            self._pubsub.close()
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]

    def __next__(self) -> MessageProxy | None:
        self._slot_freed.clear()  # any ack from here on ends the wait below
        message: MessageProxy | None = super().__next__()  # type: ignore[no-untyped-call]
        if message is not None or self.outstanding_message_count >= self.prefetch:
            self._drain_if_due()
            if message is None:
                self._slot_freed.wait(self.wait_ms / 1000)
            return message
        try:
            self._wait_for_wake()
        except _PUBSUB_ERRORS as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
        return None

    def ack(self, message: MessageProxy) -> None:
        """Ack like the base consumer and end a wait for a free prefetch slot."""
        try:
            super().ack(message)  # type: ignore[no-untyped-call]
        finally:
            self._slot_freed.set()

    def nack(self, message: MessageProxy) -> None:
        """Nack like the base consumer and end a wait for a free prefetch slot."""
        try:
            super().nack(message)  # type: ignore[no-untyped-call]
        finally:
            self._slot_freed.set()

    def close(self) -> None:
        """Close the wake-up subscription, then the consumer (handing back its unread
        messages)."""
        try:
            self._pubsub.close()
        except redis.RedisError as exc:
            log.debug("closing the wake-up subscription failed: %s", exc)
        super().close()

    def _wait_for_wake(self) -> None:
        """Block until this queue's wake-up or the timeout; the caller then fetches."""
        deadline = time.monotonic() + self.wait_ms / 1000
        while (remaining := deadline - time.monotonic()) > 0:
            wake = self._pubsub.get_message(timeout=remaining)
            if wake is None:  # timed out (or a subscribe confirmation): poll
                return
            if wake.get("data") in self._wake_names:
                self._drain()
                return

    def _drain(self) -> None:
        """Discard buffered wake-ups without blocking (one fetch answers them all)."""
        for _ in range(_DRAIN_LIMIT):
            if self._pubsub.get_message(timeout=0) is None:
                break
        self._last_drain = time.monotonic()

    def _drain_if_due(self) -> None:
        """While busy, discard wake-ups now and then; never fail a fetched message."""
        if time.monotonic() - self._last_drain < _BUSY_DRAIN_INTERVAL:
            return
        try:
            self._drain()
        except redis.RedisError as exc:  # the next idle wait reports a dead connection
            self._last_drain = time.monotonic()
            log.debug("draining wake-ups failed: %s", exc)
