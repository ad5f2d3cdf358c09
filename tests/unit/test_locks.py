"""Per-target locks on a fake Redis: all or nothing, own token only, leases, no overlap."""

from __future__ import annotations

import contextlib
import threading
import time

import fakeredis
import pytest

from stream_outbox.worker.store.locks import LockLost, TargetBusy, TargetLocks

PREFIX = "stream_outbox:lock"


@pytest.fixture()
def locks(redis: fakeredis.FakeRedis) -> TargetLocks:
    return TargetLocks(redis)


def held_keys(redis: fakeredis.FakeRedis) -> set[str]:
    return {key.decode() for key in redis.keys(f"{PREFIX}:*")}


def test_holding_takes_every_lock_and_releases_them_after(
    locks: TargetLocks, redis: fakeredis.FakeRedis
) -> None:
    # Given three users
    ids = ["u3", "u1", "u2"]

    # When holding them, Then each has a lock with a lease while the block runs
    with locks.hold("user", ids):
        assert held_keys(redis) == {f"{PREFIX}:user:{uid}" for uid in ids}
        assert all(0 < redis.pttl(f"{PREFIX}:user:{uid}") <= 120_000 for uid in ids)

    # And none is left afterwards
    assert held_keys(redis) == set()


def test_locks_are_released_when_the_block_raises(
    locks: TargetLocks, redis: fakeredis.FakeRedis
) -> None:
    # Given a reconcile that fails under the lock
    with pytest.raises(RuntimeError), locks.hold("user", ["u1"]):
        raise RuntimeError("stream down")

    # Then the lock is free again
    assert held_keys(redis) == set()


def test_acquisition_is_all_or_nothing(locks: TargetLocks, redis: fakeredis.FakeRedis) -> None:
    # Given another worker holding one user of a batch
    other = TargetLocks(redis)
    with other.hold("user", ["u2"]):
        # When this worker wants u1, u2 and u3 without waiting
        with (
            pytest.raises(TargetBusy, match="user target busy"),
            locks.hold("user", ["u1", "u2", "u3"], wait=0),
        ):
            pytest.fail("the block must not run")  # pragma: no cover

        # Then it keeps none of them: only the other worker's lock remains
        assert held_keys(redis) == {f"{PREFIX}:user:u2"}

        # And the free users can still be taken by anyone
        with other.hold("user", ["u1", "u3"], wait=0):
            pass


def test_kinds_do_not_share_locks(locks: TargetLocks) -> None:
    # Given a user "7" held, When a conversation with the same id is wanted, Then it is free
    with locks.hold("user", ["7"]), locks.hold("conversation", ["7"], wait=0):
        pass


def test_release_removes_only_our_own_token(locks: TargetLocks, redis: fakeredis.FakeRedis) -> None:
    # Given a lock we hold whose lease ran out and was taken by another worker meanwhile
    key = f"{PREFIX}:user:u1"
    with pytest.raises(LockLost), locks.hold("user", ["u1"]):
        redis.set(key, "someone-else", px=60_000)

    # Then leaving our block does not free the other worker's lock (and says ours was lost)
    assert redis.get(key) == b"someone-else"


def test_busy_after_waiting(locks: TargetLocks, redis: fakeredis.FakeRedis) -> None:
    # Given a target another worker holds
    with TargetLocks(redis).hold("conversation", ["c1"]):
        # When waiting for it at most 0.2 s
        started = time.monotonic()
        with pytest.raises(TargetBusy, match="c1"), locks.hold("conversation", ["c1"], wait=0.2):
            pytest.fail("the block must not run")  # pragma: no cover
        waited = time.monotonic() - started

    # Then it gave up after about that long
    assert 0.2 <= waited < 1.5


def test_a_wait_ends_at_once_when_the_process_stops(redis: fakeredis.FakeRedis) -> None:
    # Given a target another worker holds, and a worker waiting up to a minute for it
    stopping = threading.Event()
    locks = TargetLocks(redis, stopping=stopping)
    failure: list[Exception] = []

    def wait() -> None:
        try:
            with locks.hold("user", ["u1"], wait=60):
                pass
        except TargetBusy as exc:
            failure.append(exc)

    with TargetLocks(redis).hold("user", ["u1"]):
        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.05)
        # When its process starts to shut down
        stopping.set()
        waiter.join(timeout=5)

    # Then the wait ended (a busy target, retried later), not after the minute
    assert not waiter.is_alive()
    assert [str(exc) for exc in failure] == ["user target busy: u1 (worker stopping)"]


def test_a_waiting_worker_gets_the_lock_once_it_is_released(
    locks: TargetLocks, redis: fakeredis.FakeRedis
) -> None:
    # Given a holder that lets go after 0.1 s
    other = TargetLocks(redis)
    taken = threading.Event()

    def hold_briefly() -> None:
        with other.hold("user", ["u1"]):
            taken.set()
            time.sleep(0.1)

    thread = threading.Thread(target=hold_briefly)
    thread.start()
    assert taken.wait(2)

    # When this worker waits up to 5 s
    started = time.monotonic()
    with locks.hold("user", ["u1"], wait=5.0):
        waited = time.monotonic() - started
    thread.join()

    # Then it got the lock soon after the release, not at the deadline
    assert waited < 1.5


def test_an_expired_lease_lets_another_holder_in(redis: fakeredis.FakeRedis) -> None:
    # Given a worker that took a lock with a 50 ms lease and then stalled (or died)
    stalled = TargetLocks(redis, lease=0.05).hold("user", ["u1"])
    stalled.__enter__()
    finished = False
    try:
        # When another worker asks without waiting, Then it is busy at first
        alive = TargetLocks(redis)
        with pytest.raises(TargetBusy), alive.hold("user", ["u1"], wait=0):
            pytest.fail("the block must not run")  # pragma: no cover

        # And once the lease has run out, the other worker gets in
        time.sleep(0.1)
        with alive.hold("user", ["u1"], wait=0):
            token = redis.get(f"{PREFIX}:user:u1")
            # And the stalled worker finishing late does not free the new holder's lock;
            # it learns that it lost its own (its job then reconciles again)
            finished = True
            with pytest.raises(LockLost):
                stalled.__exit__(None, None, None)
            assert redis.get(f"{PREFIX}:user:u1") == token
    finally:
        if not finished:
            with contextlib.suppress(LockLost):
                stalled.__exit__(None, None, None)


def test_contending_threads_never_overlap(redis: fakeredis.FakeRedis) -> None:
    # Given two workers (threads with their own TargetLocks) reconciling one conversation
    inside = 0
    most_inside = 0
    entries = 0
    counter_lock = threading.Lock()
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def work() -> None:
        nonlocal inside, most_inside, entries
        locks = TargetLocks(redis)
        try:
            start.wait(5)
            for _ in range(15):
                # overlapping sets: each takes the shared target plus one of its own
                with locks.hold("conversation", ["shared", threading.current_thread().name]):
                    with counter_lock:
                        inside += 1
                        entries += 1
                        most_inside = max(most_inside, inside)
                    time.sleep(0.001)
                    with counter_lock:
                        inside -= 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, name=f"worker-{n}") for n in range(2)]

    # When both run at once
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # Then every entry happened, and never two at the same time
    assert errors == []
    assert entries == 30
    assert most_inside == 1
    assert held_keys(redis) == set()


def test_holding_nothing_or_a_repeated_target_does_not_wait(locks: TargetLocks) -> None:
    # Given no target, and one target named twice
    # When holding them, Then both are taken at once (no TargetBusy after the wait)
    with locks.hold("user", [], wait=0.0):
        pass
    with locks.hold("user", ["u1", "u1"], wait=0.0):
        pass


def test_hold_free_takes_the_free_locks_and_skips_the_held_ones(
    locks: TargetLocks, redis: fakeredis.FakeRedis
) -> None:
    # Given one of three conversations held by another job
    with locks.hold("conversation", ["c2"]):
        # When holding whichever of the three are free
        with locks.hold_free("conversation", ["c1", "c2", "c3"]) as held:
            # Then the two free ones are held, in the order asked
            assert held == ["c1", "c3"]
            assert held_keys(redis) == {f"{PREFIX}:conversation:{c}" for c in ("c1", "c2", "c3")}
        # And only those two are released after the block
        assert held_keys(redis) == {f"{PREFIX}:conversation:c2"}


def test_a_lock_lost_while_held_is_reported_on_release(
    locks: TargetLocks, redis: fakeredis.FakeRedis
) -> None:
    # Given a lock that vanishes while held (a Redis restart without persistence)
    # When the block ends, Then LockLost says so (the job reconciles again)
    with (
        pytest.raises(LockLost, match="1 of 2 user locks were lost"),
        locks.hold("user", ["u1", "u2"]),
    ):
        redis.delete(f"{PREFIX}:user:u1")
    assert held_keys(redis) == set()
    # And a lock another worker took over after the lease ran out counts as lost too
    with pytest.raises(LockLost), locks.hold_free("conversation", ["c1"]) as held:
        assert held == ["c1"]
        redis.set(f"{PREFIX}:conversation:c1", "someone-else")
    assert held_keys(redis) == {f"{PREFIX}:conversation:c1"}  # not ours: left alone


def test_an_error_in_the_block_is_not_hidden_by_a_lost_lock(
    locks: TargetLocks, redis: fakeredis.FakeRedis
) -> None:
    with pytest.raises(ValueError, match="reconcile failed"), locks.hold("user", ["u1"]):
        redis.delete(f"{PREFIX}:user:u1")
        raise ValueError("reconcile failed")
