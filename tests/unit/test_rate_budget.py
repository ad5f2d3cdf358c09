"""The shared rate budget on a fake Redis: per-second slices of per-minute budgets."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import fakeredis
import pytest

from stream_outbox.worker.errors import TransientStreamError
from stream_outbox.worker.store.rate_budget import RedisRateBudget, lease_size


class FakeClock:
    """Wall and monotonic time that move only when someone sleeps."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.mono = 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.mono += seconds


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A quarter past a whole second, for the budget and for Dramatiq's bucket limiter."""
    fake = FakeClock(float(int(time.time())) + 0.25)
    monkeypatch.setattr("stream_outbox.worker.store.rate_budget.time", fake)
    monkeypatch.setattr("dramatiq.rate_limits.bucket.time", fake)
    return fake


def calls_let_through(budget: RedisRateBudget, endpoint: str, attempts: int) -> int:
    """How many of ``attempts`` calls get a slot before the first refusal."""
    for done in range(attempts):
        try:
            budget.acquire(endpoint)
        except TransientStreamError:
            return done
    return attempts


def test_an_unlisted_endpoint_never_waits(redis: fakeredis.FakeRedis, clock: FakeClock) -> None:
    # Given a budget for UpdateUsers only
    budget = RedisRateBudget(redis, {"UpdateUsers": 60}, max_wait=0)

    # When another endpoint is called many times
    for _ in range(500):
        budget.acquire("QueryChannels")

    # Then it never waited nor touched Redis
    assert clock.sleeps == []
    assert redis.keys("*") == []


@pytest.mark.parametrize(
    ("per_minute", "per_second"),
    [(600, 9), (6000, 95), (1200, 19), (100, 1), (60, 1)],
)
def test_a_minute_budget_is_spread_over_seconds_with_headroom(
    redis: fakeredis.FakeRedis, clock: FakeClock, per_minute: int, per_second: int
) -> None:
    # Given a budget of N calls a minute, and no patience
    budget = RedisRateBudget(redis, {"UpdateUsers": per_minute}, max_wait=0)

    # When calling within one second
    through = calls_let_through(budget, "UpdateUsers", per_second + 5)

    # Then floor(N * 0.95 / 60) calls (at least one) get through
    assert through == per_second


def test_no_slot_within_max_wait_is_a_transient_error(
    redis: fakeredis.FakeRedis, clock: FakeClock
) -> None:
    # Given a budget of 600 a minute (9 a second) already spent in this second
    budget = RedisRateBudget(redis, {"UpdateUsers": 600}, max_wait=0)
    for _ in range(9):
        budget.acquire("UpdateUsers")

    # When one more call comes with no patience
    with pytest.raises(TransientStreamError) as raised:
        budget.acquire("UpdateUsers")

    # Then it is told to retry in a second, naming the endpoint
    error = raised.value
    assert error.retry_after == 1.0
    assert error.endpoint == "UpdateUsers"
    assert error.describe() == "UpdateUsers: local rate budget exhausted"
    # And it gave up at once, without sleeping
    assert clock.sleeps == []


def test_a_spent_second_waits_for_the_next_one(
    redis: fakeredis.FakeRedis, clock: FakeClock
) -> None:
    # Given 9 calls a second, all spent at a quarter past the second
    budget = RedisRateBudget(redis, {"UpdateUsers": 600}, max_wait=5)
    started = clock.now
    for _ in range(9):
        budget.acquire("UpdateUsers")
    assert clock.sleeps == []

    # When the tenth call comes
    budget.acquire("UpdateUsers")

    # Then it slept to just past the next whole second, once, and got a slot there
    assert clock.sleeps == [pytest.approx(0.751)]
    assert int(clock.now) == int(started) + 1
    # And that second has its own 9 calls: 8 more pass without waiting
    for _ in range(8):
        budget.acquire("UpdateUsers")
    assert len(clock.sleeps) == 1


def test_endpoints_have_separate_budgets(redis: fakeredis.FakeRedis, clock: FakeClock) -> None:
    # Given one call a second for two endpoints
    budget = RedisRateBudget(redis, {"UpdateUsers": 60, "UpdateChannel": 60}, max_wait=0)

    # When UpdateUsers spends its call
    budget.acquire("UpdateUsers")
    with pytest.raises(TransientStreamError):
        budget.acquire("UpdateUsers")

    # Then UpdateChannel still has its own
    budget.acquire("UpdateChannel")
    keys = {key.decode() for key in redis.keys("*")}
    assert {key.split("@")[0] for key in keys} == {
        "stream_outbox:rate:UpdateUsers",
        "stream_outbox:rate:UpdateChannel",
    }


def test_workers_on_one_redis_share_a_budget(redis: fakeredis.FakeRedis, clock: FakeClock) -> None:
    # Given two workers' budgets on the same Redis, one call a second each
    first = RedisRateBudget(redis, {"UpdateUsers": 60}, max_wait=0)
    second = RedisRateBudget(redis, {"UpdateUsers": 60}, max_wait=0)

    # When the first worker spends the second's slot
    first.acquire("UpdateUsers")

    # Then the second worker has none left
    with pytest.raises(TransientStreamError):
        second.acquire("UpdateUsers")
    # But a budget under another prefix is counted apart
    RedisRateBudget(redis, {"UpdateUsers": 60}, max_wait=0, prefix="other").acquire("UpdateUsers")


def test_waiting_on_the_real_clock(redis: fakeredis.FakeRedis) -> None:
    # Given one call a second (60 a minute, minus headroom, at least one)
    budget = RedisRateBudget(redis, {"DeleteUser": 60}, max_wait=5)

    # When calling twice in a row on the real clock
    window_ms = math.ceil(60_000 / 57)  # one call in each, windows counted from the epoch
    budget.acquire("DeleteUser")
    first_window = int(time.time() * 1000) // window_ms
    started = time.monotonic()
    budget.acquire("DeleteUser")

    # Then the second call got its slot in a later window, in at most about a window
    assert int(time.time() * 1000) // window_ms > first_window
    assert time.monotonic() - started < 2.5


# -- limits that change ------------------------------------------------------------------


def test_limits_are_asked_for_at_the_first_call_and_again_after_the_interval(
    redis: fakeredis.FakeRedis, clock: FakeClock
) -> None:
    # Given a budget that starts from a table and asks Stream every 600 s
    answers = [{"SendMessage": 60}, {"SendMessage": 120}]
    asked: list[float] = []

    def ask() -> dict[str, int]:
        asked.append(clock.mono)
        return answers[min(len(asked) - 1, 1)]

    budget = RedisRateBudget(redis, {"SendMessage": 6000}, refresh=ask, refresh_every=600)
    # When the first call is made, Then Stream is asked, and its limit applies at once
    budget.acquire("SendMessage")
    assert (len(asked), budget.limits) == (1, {"SendMessage": 60})
    # When calls go on within the interval, Then Stream is not asked again
    clock.sleep(599)
    budget.acquire("SendMessage")
    assert len(asked) == 1
    # When the interval has passed, Then the next call asks again and takes the new limit
    clock.sleep(2)
    budget.acquire("SendMessage")
    assert (len(asked), budget.limits) == (2, {"SendMessage": 120})


def test_a_budget_run_dry_asks_for_the_limits_again_before_the_interval(
    redis: fakeredis.FakeRedis, clock: FakeClock
) -> None:
    # Given limits read while Stream had lowered them (one call a minute: with the
    # headroom, one call a bucket of 63.158 s; the run starts at a bucket's beginning),
    # raised since
    bucket = math.ceil(60_000 / 0.95) / 1000
    clock.now = (clock.now // bucket + 1) * bucket + 0.25
    answers = [{"UpdateUsers": 1}, {"UpdateUsers": 6000}]
    asked: list[float] = []

    def ask() -> dict[str, int]:
        asked.append(clock.mono)
        return answers[min(len(asked) - 1, 1)]

    budget = RedisRateBudget(
        redis, {"UpdateUsers": 300}, refresh=ask, refresh_every=600, max_wait=5
    )
    budget.acquire("UpdateUsers")
    assert budget.limits == {"UpdateUsers": 1}
    # When calls find no slot, Then Stream is asked again once 15 s have passed, not sooner
    with pytest.raises(TransientStreamError):
        budget.acquire("UpdateUsers")
    assert len(asked) == 1
    clock.sleep(10)
    with pytest.raises(TransientStreamError):
        budget.acquire("UpdateUsers")
    assert len(asked) == 2
    # And the raised limits serve the next calls at once
    assert calls_let_through(budget, "UpdateUsers", 50) == 50


def test_a_stopping_process_waits_for_no_slot(redis: fakeredis.FakeRedis, clock: FakeClock) -> None:
    # Given a spent budget, in a process shutting down
    stopping = threading.Event()
    budget = RedisRateBudget(redis, {"UpdateUsers": 60}, max_wait=5, stopping=stopping)
    budget.acquire("UpdateUsers")
    stopping.set()
    # When a call asks for a slot, Then it fails at once (its job retries later)
    with pytest.raises(TransientStreamError, match="worker stopping"):
        budget.acquire("UpdateUsers")
    assert clock.sleeps == []


def test_a_failed_refresh_keeps_the_limits_and_tries_again_later(
    redis: fakeredis.FakeRedis, clock: FakeClock
) -> None:
    # Given Stream failing to answer
    def ask() -> dict[str, int]:
        raise TransientStreamError("timed out", endpoint="GetRateLimits")

    budget = RedisRateBudget(redis, {"UpdateUsers": 300}, refresh=ask, refresh_every=600)
    # When a call needs a slot, Then it gets one under the limits it had
    budget.acquire("UpdateUsers")
    assert budget.limits == {"UpdateUsers": 300}


def test_without_a_refresh_the_limits_stay(redis: fakeredis.FakeRedis, clock: FakeClock) -> None:
    budget = RedisRateBudget(redis, {"UpdateUsers": 300})
    clock.sleep(10_000)
    budget.acquire("UpdateUsers")
    assert budget.limits == {"UpdateUsers": 300}


class CountingRedis:
    """A Redis client that counts its round trips (a command, or a pipeline's execute)."""

    def __init__(self, inner: fakeredis.FakeRedis) -> None:
        self.inner, self.trips = inner, 0

    def pipeline(self, transaction: bool = True) -> object:
        pipe = self.inner.pipeline(transaction=transaction)
        execute = pipe.execute

        def counted() -> list[object]:
            self.trips += 1
            return execute()

        pipe.execute = counted  # type: ignore[method-assign]
        return pipe

    def __getattr__(self, name: str) -> object:
        self.trips += 1
        return getattr(self.inner, name)


def test_a_call_costs_one_round_trip_and_a_spent_window_none(
    redis: fakeredis.FakeRedis, clock: FakeClock
) -> None:
    # Given 9 calls a second
    counting = CountingRedis(redis)
    budget = RedisRateBudget(counting, {"UpdateUsers": 600}, max_wait=0)  # type: ignore[arg-type]
    # When 9 calls take the second's slots, Then each made one round trip
    assert calls_let_through(budget, "UpdateUsers", 9) == 9
    assert counting.trips == 9
    # When more calls come in the spent second, Then the first finds it spent (one more
    # round trip), and the others wait without asking Redis
    assert calls_let_through(budget, "UpdateUsers", 5) == 0
    for _ in range(4):
        with pytest.raises(TransientStreamError):
            budget.acquire("UpdateUsers")
    assert counting.trips == 10
    # When the next second comes, Then a call asks Redis again and gets its slot
    clock.sleep(1)
    budget.acquire("UpdateUsers")
    assert counting.trips == 11


def test_a_busy_process_takes_leases_and_asks_redis_less(
    redis: fakeredis.FakeRedis, clock: FakeClock
) -> None:
    # Given 60,000 calls a minute (950 a second), and one process's counting Redis
    counting = CountingRedis(redis)
    budget = RedisRateBudget(counting, {"GetOrCreateChannel": 60_000}, max_wait=0)  # type: ignore[arg-type]

    # When 500 calls come within one second
    assert calls_let_through(budget, "GetOrCreateChannel", 500) == 500

    # Then its leases grew (1, 2, 4, 8, 16, 32, then 59 a time): 14 round trips, not 500
    assert counting.trips == 14
    # And the counter holds what was leased, never more than the second allows
    (key,) = redis.keys("*")
    assert 500 <= int(redis.get(key)) <= 950


def test_processes_with_leases_together_never_pass_a_window(
    redis: fakeredis.FakeRedis, clock: FakeClock
) -> None:
    # Given two processes sharing 6,000 calls a minute (95 a second)
    first = RedisRateBudget(redis, {"UpdateUsers": 6000}, max_wait=0)
    second = RedisRateBudget(redis, {"UpdateUsers": 6000}, max_wait=0)

    # When both call, in turn, until each is refused
    through, refused = 0, set()
    while len(refused) < 2:
        for name, budget in (("first", first), ("second", second)):
            if name in refused:
                continue
            try:
                budget.acquire("UpdateUsers")
                through += 1
            except TransientStreamError:
                refused.add(name)

    # Then together they made exactly the second's 95 calls: every leased slot was used
    assert through == 95


def test_a_lease_left_unused_shrinks_so_the_others_keep_the_window(
    redis: fakeredis.FakeRedis, clock: FakeClock
) -> None:
    # Given a process whose leases grew in a busy second (60,000 a minute)
    budget = RedisRateBudget(redis, {"UpdateUsers": 60_000}, max_wait=0)
    assert calls_let_through(budget, "UpdateUsers", 200) == 200

    # When it calls once a second for a while
    for _ in range(8):
        clock.sleep(1)
        budget.acquire("UpdateUsers")

    # Then each quiet second holds fewer of its slots, down to one
    clock.sleep(1)
    budget.acquire("UpdateUsers")
    assert int(redis.get(f"stream_outbox:rate:UpdateUsers@{int(clock.now)}")) == 1


@pytest.mark.parametrize(
    ("current", "limit", "spent", "unused", "expected"),
    [
        (1, 950, True, False, 2),  # spent within its window: doubles
        (32, 950, True, False, 59),  # up to a sixteenth of the window's limit
        (64, 100_000, True, False, 64),  # and never over 64
        (8, 950, False, True, 4),  # a window left with slots unused: halves
        (1, 950, False, True, 1),  # never under one
        (4, 9, True, False, 1),  # a small window: one slot a time
        (8, 950, False, False, 8),  # spent at the window's end: kept
    ],
)
def test_a_lease_follows_demand(
    current: int, limit: int, spent: bool, unused: bool, expected: int
) -> None:
    assert lease_size(current, limit, spent=spent, unused=unused) == expected


class RacingRedis(CountingRedis):
    """Runs ``meanwhile`` once, just before the first pipeline's round trip: another
    thread's lease, taken between this lease's start and its answer."""

    def __init__(self, inner: fakeredis.FakeRedis, meanwhile: Callable[[], None]) -> None:
        super().__init__(inner)
        self.meanwhile: Callable[[], None] | None = meanwhile

    def pipeline(self, transaction: bool = True) -> object:
        pipe = super().pipeline(transaction)
        execute = pipe.execute  # type: ignore[attr-defined]

        def racing() -> list[object]:
            if self.meanwhile is not None:
                run, self.meanwhile = self.meanwhile, None
                run()
            return execute()  # type: ignore[no-any-return]

        pipe.execute = racing  # type: ignore[attr-defined]
        return pipe


def test_slots_leased_stay_usable_once_another_lease_finds_the_window_spent(
    redis: fakeredis.FakeRedis, clock: FakeClock
) -> None:
    # Given 95 calls a second, 93 of this second already counted by other processes
    second = f"stream_outbox:rate:UpdateUsers@{int(clock.now)}"
    redis.set(second, 93)
    # and two threads of this process leasing at once: the second's lease (of two: the
    # last two slots) is answered before the first's
    racing = RacingRedis(redis, lambda: None)
    budget = RedisRateBudget(racing, {"UpdateUsers": 6000}, max_wait=0)  # type: ignore[arg-type]
    racing.meanwhile = lambda: budget.acquire("UpdateUsers")
    # When the first thread's lease finds the second spent
    with pytest.raises(TransientStreamError):
        budget.acquire("UpdateUsers")
    # Then the slot left of the second thread's lease is still this process's to use
    budget.acquire("UpdateUsers")
    assert calls_let_through(budget, "UpdateUsers", 3) == 0
    assert int(redis.get(second)) == 96
