"""The waking Redis broker against real Redis: fast idle pickup, the poll as fallback."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer

from stream_outbox.worker.pipeline.wakeup import WakingRedisBroker
from stream_outbox.worker.runtime import delete_prefixed_keys
from tests.support.redis import REDIS_PREFIX

QUEUE = "wakeup_test"


class Recorder:
    """An actor that notes when (time.monotonic) each call ran."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.ran: dict[str, float] = {}
        self.done = threading.Condition()
        self.actor: Any = dramatiq.Actor(
            self.record,
            actor_name="record",
            queue_name=QUEUE,
            broker=broker,
            priority=0,
            options={},
        )

    def record(self, key: str) -> None:
        with self.done:
            self.ran[key] = time.monotonic()
            self.done.notify_all()

    def wait(self, key: str, timeout: float = 5.0) -> float:
        with self.done:
            assert self.done.wait_for(lambda: key in self.ran, timeout), f"{key} never ran"
            return self.ran[key]


@pytest.fixture()
def make_broker(redis_url: str) -> Iterator[Callable[[], WakingRedisBroker]]:
    """Brokers on a namespace of this test's own; its keys are deleted afterwards."""
    prefix = f"{REDIS_PREFIX}:wakeup_{uuid.uuid4().hex[:8]}"
    brokers: list[WakingRedisBroker] = []

    def make() -> WakingRedisBroker:
        broker = WakingRedisBroker(
            url=redis_url, namespace=f"{prefix}:dramatiq", wake_channel=f"{prefix}:dramatiq:wake"
        )
        brokers.append(broker)
        return broker

    yield make
    client = redis.Redis.from_url(redis_url)
    try:
        delete_prefixed_keys(client, prefix)
    finally:
        client.close()
    for broker in brokers:
        broker.close()
        broker.client.connection_pool.disconnect()


@pytest.fixture()
def run_worker() -> Iterator[Callable[[dramatiq.Broker, int], dramatiq.Worker]]:
    workers: list[dramatiq.Worker] = []

    def start(broker: dramatiq.Broker, timeout_ms: int) -> dramatiq.Worker:
        worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=timeout_ms)
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop(timeout=10_000)


def test_idle_worker_picks_up_at_once(
    make_broker: Callable[[], WakingRedisBroker],
    run_worker: Callable[[dramatiq.Broker, int], dramatiq.Worker],
) -> None:
    # An idle consumer that polled would wait out its timeout (10 s here) before it
    # fetched again; a wake-up ends the wait (a millisecond or two: the pickup latency
    # is measured by the benchmarks, this holds only that no pickup waits for the poll).
    broker = make_broker()
    recorder = Recorder(broker)
    run_worker(broker, 10_000)
    pickups = []
    for run in range(5):
        time.sleep(0.3)
        sent = time.monotonic()
        recorder.actor.send(f"run-{run}")
        pickups.append(recorder.wait(f"run-{run}") - sent)
    assert max(pickups) < 3.0, pickups
    # And a message enqueued without a wake-up still waits for the poll (the test can fail)
    time.sleep(0.3)
    RedisBroker.enqueue(broker, recorder.actor.message("silent"))
    with pytest.raises(AssertionError, match="never ran"):
        recorder.wait("silent", timeout=3.0)
    recorder.actor.send("wake")  # ends the consumer's wait, so the worker stops at once
    recorder.wait("wake")


def test_message_without_wakeup_is_still_polled(
    make_broker: Callable[[], WakingRedisBroker],
    run_worker: Callable[[dramatiq.Broker, int], dramatiq.Worker],
) -> None:
    broker = make_broker()
    recorder = Recorder(broker)
    run_worker(broker, 300)
    time.sleep(0.2)
    sent = time.monotonic()
    for n in range(3):
        RedisBroker.enqueue(broker, recorder.actor.message(f"silent-{n}"))  # no publish
    for n in range(3):
        assert recorder.wait(f"silent-{n}") - sent < 0.3 + 1.0


def test_delayed_message_still_runs(
    make_broker: Callable[[], WakingRedisBroker],
    run_worker: Callable[[dramatiq.Broker, int], dramatiq.Worker],
) -> None:
    broker = make_broker()
    recorder = Recorder(broker)
    run_worker(broker, 300)
    sent = time.monotonic()
    recorder.actor.send_with_options(args=("later",), delay=200)
    ran = recorder.wait("later")
    assert 0.2 <= ran - sent < 0.2 + 0.3 + 1.0


def test_enqueue_publishes_the_queue_name_only_without_delay(
    make_broker: Callable[[], WakingRedisBroker],
) -> None:
    broker = make_broker()
    actor = Recorder(broker).actor
    pubsub = broker.client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(broker.wake_channel)
        pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        actor.send_with_options(args=("later",), delay=60_000)
        actor.send("now")
        wake = pubsub.get_message(timeout=1.0)
        assert wake is not None and wake["data"] == QUEUE.encode()
        assert pubsub.get_message(timeout=0.1) is None
    finally:
        pubsub.close()


def test_failed_publish_does_not_fail_enqueue(
    make_broker: Callable[[], WakingRedisBroker],
) -> None:
    broker = make_broker()
    actor = Recorder(broker).actor
    down = redis.ConnectionError("wake channel down")
    with mock.patch.object(broker.client, "publish", side_effect=down) as publish:
        actor.send("stored")
    publish.assert_called_once_with(broker.wake_channel, QUEUE)
    assert broker.do_qsize(QUEUE) == 1


def test_consumer_turns_pubsub_errors_into_connection_closed(
    make_broker: Callable[[], WakingRedisBroker],
) -> None:
    broker = make_broker()
    Recorder(broker)
    consumer = broker.consume(QUEUE, prefetch=1, timeout=50)
    delay_consumer = broker.consume(f"{QUEUE}.DQ", prefetch=1, timeout=50)
    try:
        assert isinstance(delay_consumer, _RedisConsumer)
        pubsub = consumer._pubsub  # type: ignore[attr-defined]
        down = redis.ConnectionError("gone")
        with (
            mock.patch.object(pubsub, "get_message", side_effect=down),
            pytest.raises(dramatiq.ConnectionClosed),
        ):
            next(consumer)
    finally:
        consumer.close()
        delay_consumer.close()
    assert pubsub.connection is None


@pytest.mark.parametrize("queue", [QUEUE, f"{QUEUE}.DQ"])
def test_closed_consumer_hands_back_what_it_fetched_but_never_returned(
    make_broker: Callable[[], WakingRedisBroker], queue: str
) -> None:
    # Given a consumer that fetched three messages in one go and returned one (a stopping
    # worker's consumer thread leaves its loop between two messages of a fetch)
    broker = make_broker()
    actor = Recorder(broker).actor
    delay = 60_000 if queue.endswith(".DQ") else None
    for n in range(3):
        actor.send_with_options(args=(f"m{n}",), delay=delay)
    consumer = broker.consume(queue, prefetch=3, timeout=50)
    returned = next(consumer)
    assert returned is not None
    # When it closes (the worker stops; the returned one goes back with the work queue)
    consumer.close()
    consumer.close()  # a second close hands back nothing twice
    # Then another worker gets the two it never returned, not only after Dramatiq's
    # maintenance finds the stopped worker's acks (a heartbeat timeout later)
    fresh = make_broker()
    other = fresh.consume(queue, prefetch=10, timeout=50)
    try:
        got = [message for message in (next(other), next(other)) if message is not None]
        assert sorted(m.args[0] for m in got) == sorted({"m0", "m1", "m2"} - {returned.args[0]})
        assert next(other) is None
    finally:
        other.close()
