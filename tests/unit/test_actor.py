"""The reconcile actor end to end in one process: StubBroker, SQLite, fake Redis, fake Stream.

Rows go into an in-memory outbox, the relay claims them and enqueues jobs on a
Dramatiq StubBroker, a real ``dramatiq.Worker`` runs ``run_job``, and a fake
gateway stands in for Stream. Nothing leaves the process.
"""

from __future__ import annotations

import copy
import logging
import sqlite3
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import fakeredis
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, Retries
from sqlalchemy import Engine, create_engine, delete, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from stream_outbox.app_hooks.outbox import Status, metadata, outbox
from stream_outbox.app_hooks.reference import (
    REFERENCE_BINDING,
    Base,
    Conversation,
    ConversationParticipant,
    Event,
    EventParticipant,
    Message,
    Profile,
    User,
)
from stream_outbox.worker import runtime
from stream_outbox.worker.errors import PermanentStreamError, TransientStreamError
from stream_outbox.worker.pipeline.broker import configure_middleware, declare_actors
from stream_outbox.worker.pipeline.relay import Relay
from stream_outbox.worker.settings import Settings
from stream_outbox.worker.store.locks import TargetLocks
from stream_outbox.worker.store.repository import ChannelRef, OutboxRepository
from stream_outbox.worker.stream.protocol import HistoryPage, RemoteChannel

MAX_RETRIES = 2  # three attempts in all

# The relay's claim is UPDATE ... RETURNING (FOR UPDATE SKIP LOCKED is dropped on SQLite).
assert sqlite3.sqlite_version_info >= (3, 35), "SQLite >= 3.35 is needed for RETURNING"


class FakeGateway:
    """Stands in for ``StreamGateway``: records calls, holds channels, fails when told to."""

    def __init__(self) -> None:
        self.calls = 0
        self.log: list[tuple[str, tuple[Any, ...]]] = []
        self.times: dict[str, list[float]] = defaultdict(list)
        self.upserts: list[list[str]] = []
        self.users: dict[str, dict[str, Any]] = {}
        self.deactivated: list[str] = []
        self.deleted_users: list[str] = []
        self.created: list[dict[str, Any]] = []
        self.deleted_channels: list[tuple[str, str, bool]] = []
        self.data_updates: list[tuple[str, str, dict[str, Any], tuple[str, ...]]] = []
        self.channels: dict[tuple[str, str], RemoteChannel] = {}
        self.rejected_users: dict[str, PermanentStreamError] = {}
        self._failures: dict[str, list[Exception]] = defaultdict(list)

    def fail(self, method: str, error: Exception, times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` raise (a copy of) ``error``."""
        self._failures[method].extend(copy.copy(error) for _ in range(times))

    def reject_user(self, user_id: str, error: PermanentStreamError) -> None:
        """Make every upsert that includes ``user_id`` fail permanently."""
        self.rejected_users[user_id] = error

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.log if name == method)

    def thread_calls(self) -> int:
        return self.calls  # the tests' jobs run one at a time

    def call_latency(self) -> float:
        return 0.0

    def _enter(self, method: str, *args: Any) -> None:
        self.calls += 1
        self.log.append((method, args))
        self.times[method].append(time.monotonic())
        if self._failures[method]:
            raise self._failures[method].pop(0)

    # -- users ---------------------------------------------------------------------

    def upsert_users(self, users: Sequence[dict[str, Any]]) -> set[str]:
        if not users:
            return set()  # like the real gateway: no chunk, no call
        self._enter("upsert_users", [dict(u) for u in users])
        self.upserts.append([user["id"] for user in users])
        for user in users:
            if user["id"] in self.rejected_users:
                raise copy.copy(self.rejected_users[user["id"]])
        self.users.update({user["id"]: dict(user) for user in users})
        return set()

    def reactivate_users(self, user_ids: Sequence[str]) -> None:
        self._enter("reactivate_users", list(user_ids))

    def restore_users(self, user_ids: Sequence[str]) -> None:
        self._enter("restore_users", list(user_ids))

    def deactivate_users(self, user_ids: Sequence[str]) -> None:
        self._enter("deactivate_users", list(user_ids))
        self.deactivated += user_ids

    def delete_users(self, user_ids: Sequence[str]) -> None:
        self._enter("delete_users", list(user_ids))
        self.deleted_users += user_ids

    def query_users(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        self._enter("query_users", list(user_ids))
        return {uid: self.users[uid] for uid in user_ids if uid in self.users}

    # -- channels ------------------------------------------------------------------

    def get_or_create_channel(
        self,
        channel_type: str,
        channel_id: str,
        *,
        created_by: str,
        members: Sequence[str],
        data: dict[str, Any],
    ) -> RemoteChannel:
        self._enter("get_or_create_channel", channel_type, channel_id)
        self.created.append(
            {
                "channel_type": channel_type,
                "channel_id": channel_id,
                "created_by": created_by,
                "members": list(members),
                "data": dict(data),
            }
        )
        key = (channel_type, channel_id)
        if key not in self.channels:
            self.channels[key] = RemoteChannel(
                channel_type, channel_id, frozenset(members), dict(data), created_by
            )
        return self.channels[key]

    def channel_members(self, channel_type: str, channel_id: str) -> list[str]:
        self._enter("channel_members", channel_type, channel_id)
        return sorted(self.channels[(channel_type, channel_id)].members)

    def channel_states(
        self, cids: Sequence[str], *, history: bool = False
    ) -> dict[str, RemoteChannel]:
        self._enter("channel_states", *cids)
        keys = [tuple(cid.split(":", 1)) for cid in cids]
        return {f"{k[0]}:{k[1]}": self.channels[k] for k in keys if k in self.channels}

    def history_page(self, channel_type: str, channel_id: str, before: str) -> HistoryPage:
        self._enter("history_page", channel_type, channel_id)
        return HistoryPage()

    def update_channel_data(
        self, channel_type: str, channel_id: str, set_: dict[str, Any], unset: Sequence[str]
    ) -> None:
        self._enter("update_channel_data", channel_type, channel_id, dict(set_), tuple(unset))
        self.data_updates.append((channel_type, channel_id, dict(set_), tuple(unset)))

    def add_members(self, channel_type: str, channel_id: str, user_ids: Sequence[str]) -> None:
        self._enter("add_members", channel_type, channel_id, list(user_ids))

    def remove_members(self, channel_type: str, channel_id: str, user_ids: Sequence[str]) -> None:
        self._enter("remove_members", channel_type, channel_id, list(user_ids))

    def update_members(
        self, channel_type: str, channel_id: str, add: Sequence[str], remove: Sequence[str]
    ) -> None:
        self._enter("update_members", channel_type, channel_id, list(add), list(remove))

    def mark_read(self, channel_type: str, channel_id: str, user_id: str, message_id: str) -> bool:
        self._enter("mark_read", channel_type, channel_id, user_id, message_id)
        return True

    def delete_channel(self, channel_type: str, channel_id: str, *, hard: bool = False) -> None:
        self._enter("delete_channel", channel_type, channel_id, hard)
        self.deleted_channels.append((channel_type, channel_id, hard))
        self.channels.pop((channel_type, channel_id), None)

    def delete_channels(self, cids: Sequence[str], *, hard: bool = False) -> dict[str, str]:
        for cid in cids:  # recorded as single deletes: these tests are about which channel
            channel_type, _, channel_id = cid.partition(":")
            self.delete_channel(channel_type, channel_id, hard=hard)
        return {}

    # -- messages ------------------------------------------------------------------

    def send_message(
        self, channel_type: str, channel_id: str, message: dict[str, Any], user_id: str
    ) -> bool:
        self._enter("send_message", channel_type, channel_id, dict(message), user_id)
        return True

    def update_message_text(self, message_id: str, text: str, user_id: str) -> None:
        self._enter("update_message_text", message_id, text, user_id)

    def restore_message(self, message_id: str, text: str, user_id: str) -> bool:
        self._enter("restore_message", message_id, text, user_id)
        return True

    def delete_message(self, message_id: str) -> None:
        self._enter("delete_message", message_id)


@dataclass
class Invitation:
    organizer: str
    guest: str
    event: str
    conversation: str
    invitation: str


@dataclass
class Harness:
    """The actor's world: outbox and app tables, broker, worker, fake Stream."""

    engine: Engine
    broker: StubBroker
    actor: dramatiq.Actor[Any, Any]
    worker: dramatiq.Worker
    rt: runtime.Runtime
    gateway: FakeGateway
    redis: fakeredis.FakeRedis
    relay: Relay = field(init=False)

    def __post_init__(self) -> None:
        self.relay = Relay(self.rt.repo, self.actor)

    def configure(self, **settings: Any) -> None:
        """Change settings the reconciles read (deleted-user policy, hard deletes...)."""
        self.rt.settings = self.rt.settings.model_copy(update=settings)

    # -- the application's data ----------------------------------------------------

    def add_user(self, email: str, full_name: str | None = None) -> str:
        user_id = uuid.uuid4()
        with Session(self.engine) as session, session.begin():
            profile = Profile(full_name=full_name) if full_name is not None else None
            session.add(User(id=user_id, email=email, profile=profile))
        return str(user_id)

    def add_conversation(self, *user_ids: str) -> str:
        """A conversation of these users; its id."""
        conversation = uuid.uuid4()
        with Session(self.engine) as session, session.begin():
            session.add(Conversation(id=conversation))
            session.flush()
            session.add_all(
                ConversationParticipant(conversation_id=conversation, user_id=uuid.UUID(user))
                for user in user_ids
            )
        return str(conversation)

    def add_invitation(self, title: str = "Launch") -> Invitation:
        """An organizer invites a guest to an event; the invitation opens a conversation."""
        organizer = uuid.UUID(self.add_user("org@example.com", "Olga Organizer"))
        guest = uuid.UUID(self.add_user("guest@example.com"))
        event, conversation, invitation = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        with Session(self.engine) as session, session.begin():
            session.add(Event(id=event, organizer_id=organizer, title=title))
            session.add(Conversation(id=conversation))
            session.flush()
            session.add_all(
                [
                    ConversationParticipant(conversation_id=conversation, user_id=organizer),
                    ConversationParticipant(conversation_id=conversation, user_id=guest),
                    EventParticipant(
                        id=invitation, event_id=event, user_id=guest, conversation_id=conversation
                    ),
                ]
            )
        return Invitation(
            str(organizer), str(guest), str(event), str(conversation), str(invitation)
        )

    def add_message(self, conversation_id: str, sender_id: str | None, text: str) -> str:
        message_id = uuid.uuid4()
        with Session(self.engine) as session, session.begin():
            session.add(
                Message(
                    id=message_id,
                    conversation_id=uuid.UUID(conversation_id),
                    sender_id=None if sender_id is None else uuid.UUID(sender_id),
                    content=text,
                )
            )
        return str(message_id)

    # -- the outbox ----------------------------------------------------------------

    def add_rows(
        self,
        kind: str,
        target_id: str,
        count: int = 1,
        payload: dict[str, Any] | None = None,
        event: str = "upsert",
    ) -> list[int]:
        """Pending outbox rows, as the capture writes them (or an operator: ``event``)."""
        values = [
            {
                "target_kind": kind,
                "target_id": target_id,
                "event": event,
                "payload": payload or {},
            }
            for _ in range(count)
        ]
        with self.engine.begin() as conn:
            result = conn.execute(insert(outbox).returning(outbox.c.id), values)
            return [row_id for (row_id,) in result]

    def dispatch_and_work(self) -> int:
        """The relay claims every pending row and enqueues jobs; the worker runs them all."""
        dispatched = self.relay.drain()
        self.work()
        return dispatched

    def work(self) -> None:
        self.broker.join(self.actor.queue_name, fail_fast=False, timeout=30_000)
        self.worker.join()

    def rows(self) -> dict[int, tuple[str, str | None]]:
        """Each row's status and last error."""
        query = select(outbox.c.id, outbox.c.status, outbox.c.last_error).order_by(outbox.c.id)
        with self.engine.connect() as conn:
            return {row_id: (status, error) for row_id, status, error in conn.execute(query)}

    def status(self, row_ids: Sequence[int]) -> set[str]:
        rows = self.rows()
        return {rows[row_id][0] for row_id in row_ids}


def unit_settings() -> Settings:
    return Settings(
        _env_file=None,
        # the engine is built by hand; "sqlite://" itself is refused by the settings' URL check
        database_url="sqlite:///:memory:",
        max_retries=MAX_RETRIES,
        min_backoff_ms=1,
        max_backoff_ms=5,
        getstream_api_key="k",
        getstream_api_secret="s" * 32,
        deleted_user_policy="deactivate",
        hard_delete_channels=False,
        mirror_messages=True,
        queue_name="stream_outbox_unit",
    )


@dataclass
class Dramatiq:
    broker: StubBroker
    actor: dramatiq.Actor[Any, Any]
    worker: dramatiq.Worker


@pytest.fixture(scope="module")
def dramatiq_world() -> Iterator[Dramatiq]:
    """One broker and worker for the module (stopping a worker takes ~0.2 s).

    The actor finds its runtime through ``stream_outbox.worker.runtime.current()`` at each run,
    so every test installs a fresh one. One worker thread: the in-memory SQLite
    connection is shared (StaticPool), and two threads interleaving transactions
    on it would be an artefact of the test.
    """
    settings = unit_settings()
    broker = StubBroker()
    configure_middleware(broker, settings)
    actor = declare_actors(broker, settings)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        yield Dramatiq(broker, actor, worker)
    finally:
        worker.stop()
        broker.close()


@pytest.fixture()
def harness(dramatiq_world: Dramatiq) -> Iterator[Harness]:
    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    metadata.create_all(engine)
    Base.metadata.create_all(engine)
    redis = fakeredis.FakeRedis()
    gateway = FakeGateway()
    rt = runtime.Runtime(
        settings=unit_settings(),
        engine=engine,
        repo=OutboxRepository(engine),
        gateway=gateway,
        redis=redis,
        locks=TargetLocks(redis),
        binding=REFERENCE_BINDING,
    )
    runtime.install(rt)
    broker = dramatiq_world.broker
    broker.flush_all()
    try:
        yield Harness(
            engine, broker, dramatiq_world.actor, dramatiq_world.worker, rt, gateway, redis
        )
    finally:
        # leave nothing running against this runtime before it goes
        broker.join(dramatiq_world.actor.queue_name, fail_fast=False, timeout=30_000)
        dramatiq_world.worker.join()
        runtime.reset()
        redis.close()
        engine.dispose()


def unavailable(**extra: Any) -> TransientStreamError:
    return TransientStreamError("unavailable", endpoint="UpdateUsers", status=503, **extra)


# -- the wiring -------------------------------------------------------------------------


def test_the_broker_takes_the_retry_settings(harness: Harness) -> None:
    # Given the broker configured from the settings
    retries = next(m for m in harness.broker.middleware if isinstance(m, Retries))

    # Then retries are few and quick, and the current message is known to the actor
    assert (retries.max_retries, retries.min_backoff, retries.max_backoff) == (MAX_RETRIES, 1, 5)
    assert sum(isinstance(m, CurrentMessage) for m in harness.broker.middleware) == 1
    assert harness.actor.options == {"max_retries": MAX_RETRIES}
    # And declaring again is harmless
    assert declare_actors(harness.broker, harness.rt.settings) is harness.actor
    configure_middleware(harness.broker, harness.rt.settings)
    assert sum(isinstance(m, CurrentMessage) for m in harness.broker.middleware) == 1


# -- users ------------------------------------------------------------------------------


def test_a_user_job_upserts_the_desired_users_and_marks_rows_done(harness: Harness) -> None:
    # Given two users changed (the first twice), one with a profile name
    ada = harness.add_user("ada@example.com", "Ada Lovelace")
    bob = harness.add_user("bob@example.com")
    rows = harness.add_rows("user", ada, 2) + harness.add_rows("user", bob)

    # When the relay dispatches them and the worker runs
    assert harness.dispatch_and_work() == 3

    # Then both were upserted in one call, with their names, and every row is done
    assert [sorted(call) for call in harness.gateway.upserts] == [sorted([ada, bob])]
    assert harness.gateway.users[ada] == {"id": ada, "name": "Ada Lovelace"}
    assert harness.gateway.users[bob] == {"id": bob, "name": "bob@example.com"}
    assert harness.rows() == {row: (Status.DONE, None) for row in rows}
    # And they are remembered as known to Stream
    assert harness.redis.smembers("stream_outbox:known_users") == {ada.encode(), bob.encode()}


def test_a_permanent_error_fails_the_rows_at_once(harness: Harness) -> None:
    # Given Stream rejecting a user for good
    ada = harness.add_user("ada@example.com", "Ada")
    rows = harness.add_rows("user", ada, 2)
    harness.gateway.fail(
        "upsert_users",
        PermanentStreamError("name too long", endpoint="UpdateUsers", status=400, code=4),
        times=5,
    )

    # When the job runs
    harness.dispatch_and_work()

    # Then its rows failed with where and why, after one attempt only
    expected = "UpdateUsers HTTP 400 code 4: name too long"
    assert harness.rows() == {row: (Status.FAILED, expected) for row in rows}
    assert harness.gateway.count("upsert_users") == 1


def test_a_permanent_error_of_a_whole_job_fails_its_rows_without_retry(harness: Harness) -> None:
    # Given a conversation gone from the database whose channel Stream refuses to delete
    gone = str(uuid.uuid4())
    rows = harness.add_rows("conversation", gone, 2, {"channel_id": "invitation_1"})
    harness.gateway.fail(
        "delete_channel",
        PermanentStreamError("not allowed", endpoint="DeleteChannel", status=403, code=17),
        times=5,
    )

    # When the job runs
    harness.dispatch_and_work()

    # Then the rows failed with the error's description, and Stream was asked once
    expected = "DeleteChannel HTTP 403 code 17: not allowed"
    assert harness.rows() == {row: (Status.FAILED, expected) for row in rows}
    assert harness.gateway.count("delete_channel") == 1


def test_an_unknown_kind_fails_at_once(harness: Harness) -> None:
    # Given a job of a kind the actor does not know (sent by hand, say)
    (row,) = harness.add_rows("user", "whatever")
    harness.actor.send("bogus", ["x"], [row], {})

    # When it runs
    harness.work()

    # Then its rows failed, naming the kind, and Stream was never called
    assert harness.rows()[row] == (Status.FAILED, "unknown target kind 'bogus'")
    assert harness.gateway.calls == 0


def test_a_transient_error_is_retried_until_it_succeeds(harness: Harness) -> None:
    # Given Stream unavailable for the first two attempts
    ada = harness.add_user("ada@example.com", "Ada")
    rows = harness.add_rows("user", ada)
    harness.gateway.fail("upsert_users", unavailable(), times=MAX_RETRIES)

    # When the job runs
    harness.dispatch_and_work()

    # Then the third attempt succeeded and the row is done, with no error left
    assert harness.gateway.count("upsert_users") == MAX_RETRIES + 1
    assert harness.rows() == {rows[0]: (Status.DONE, None)}
    assert harness.gateway.users[ada]["name"] == "Ada"


def test_a_rate_limited_call_waits_for_the_reset(harness: Harness) -> None:
    # Given a 429 whose reset is 0.2 s away
    ada = harness.add_user("ada@example.com", "Ada")
    rows = harness.add_rows("user", ada)
    harness.gateway.fail("upsert_users", unavailable(retry_after=0.2))

    # When the job runs
    harness.dispatch_and_work()

    # Then the retry came after the reset, and succeeded
    first, second = harness.gateway.times["upsert_users"]
    assert second - first >= 0.2
    assert harness.status(rows) == {Status.DONE}


def test_exhausted_retries_fail_the_rows_with_the_last_error(harness: Harness) -> None:
    # Given Stream unavailable for longer than the retry budget
    ada = harness.add_user("ada@example.com", "Ada")
    rows = harness.add_rows("user", ada, 2)
    harness.gateway.fail("upsert_users", unavailable(), times=10)

    # When the job runs
    harness.dispatch_and_work()

    # Then it was tried max_retries + 1 times, and the rows failed saying so
    attempts = MAX_RETRIES + 1
    assert harness.gateway.count("upsert_users") == attempts
    expected = f"after {attempts} attempts: UpdateUsers HTTP 503: unavailable"
    assert harness.rows() == {row: (Status.FAILED, expected) for row in rows}
    # And the job did not end in Dramatiq's dead letters: the outbox row is the record
    assert harness.broker.dead_letters == []


def test_an_unexpected_error_is_retried_and_then_fails_the_rows(harness: Harness) -> None:
    # Given a failure that is not Stream's (a bug, a database hiccup)
    ada = harness.add_user("ada@example.com", "Ada")
    rows = harness.add_rows("user", ada)
    harness.gateway.fail("upsert_users", RuntimeError("connection reset"), times=10)

    # When the job runs
    harness.dispatch_and_work()

    # Then it was retried like a transient error, and the row names the exception
    assert harness.gateway.count("upsert_users") == MAX_RETRIES + 1
    expected = f"after {MAX_RETRIES + 1} attempts: RuntimeError: connection reset"
    assert harness.rows() == {rows[0]: (Status.FAILED, expected)}


def test_a_rejected_user_fails_only_its_own_rows(harness: Harness) -> None:
    # Given three users in one batch, Stream rejecting the second one
    ada = harness.add_user("ada@example.com", "Ada")
    bob = harness.add_user("bob@example.com", "Bob")
    cy = harness.add_user("cy@example.com", "Cy")
    ada_rows = harness.add_rows("user", ada)
    bob_rows = harness.add_rows("user", bob, 2)
    cy_rows = harness.add_rows("user", cy)
    harness.gateway.reject_user(
        bob, PermanentStreamError("bad image", endpoint="UpdateUsers", status=400, code=4)
    )

    # When the batch runs
    harness.dispatch_and_work()

    # Then after the batch failed, Stream was called once per user of the batch
    batch, *singles = harness.gateway.upserts
    assert sorted(batch) == sorted([ada, bob, cy])
    assert singles == [[user] for user in batch]
    # And only the rejected user's rows failed
    rows = harness.rows()
    assert {rows[row] for row in bob_rows} == {
        (Status.FAILED, "UpdateUsers HTTP 400 code 4: bad image")
    }
    assert {rows[row] for row in ada_rows + cy_rows} == {(Status.DONE, None)}
    # And only the accepted users are remembered as known to Stream
    assert harness.redis.smembers("stream_outbox:known_users") == {ada.encode(), cy.encode()}


@pytest.mark.parametrize(
    ("policy", "deactivated", "deleted"),
    [("deactivate", True, False), ("delete", False, True), ("keep", False, False)],
)
def test_a_deleted_user_follows_the_policy(
    harness: Harness, policy: str, deactivated: bool, deleted: bool
) -> None:
    # Given a user that was known to Stream and is gone from the database
    harness.configure(deleted_user_policy=policy)
    gone = str(uuid.uuid4())
    harness.redis.sadd("stream_outbox:known_users", gone)
    rows = harness.add_rows("user", gone)

    # When its row is reconciled
    harness.dispatch_and_work()

    # Then the policy decides what Stream is told, and the row is done
    assert harness.gateway.deactivated == ([gone] if deactivated else [])
    assert harness.gateway.deleted_users == ([gone] if deleted else [])
    assert harness.gateway.upserts == []
    assert harness.rows() == {rows[0]: (Status.DONE, None)}
    # And the user is no longer assumed to be in Stream
    assert not harness.redis.sismember("stream_outbox:known_users", gone)


def test_a_batch_with_live_and_deleted_users(harness: Harness) -> None:
    # Given a live user and a deleted one in the same batch
    ada = harness.add_user("ada@example.com", "Ada")
    gone = str(uuid.uuid4())
    rows = harness.add_rows("user", ada) + harness.add_rows("user", gone)

    # When the batch runs
    harness.dispatch_and_work()

    # Then the live one is upserted, the deleted one deactivated, both rows done
    assert harness.gateway.upserts == [[ada]]
    assert harness.gateway.deactivated == [gone]
    assert harness.status(rows) == {Status.DONE}


def test_a_busy_target_waits_for_its_lock(harness: Harness) -> None:
    # Given another worker reconciling the same user
    ada = harness.add_user("ada@example.com", "Ada")
    rows = harness.add_rows("user", ada)
    with TargetLocks(harness.redis).hold("user", [ada]):
        # When the job arrives meanwhile
        harness.relay.drain()
        time.sleep(0.3)

        # Then it has not called Stream yet
        assert harness.gateway.calls == 0
        released = time.monotonic()

    # And once the other worker is done, it runs
    harness.work()
    assert harness.gateway.times["upsert_users"][0] >= released
    assert harness.status(rows) == {Status.DONE}


def test_a_user_batch_goes_on_without_the_users_another_job_holds(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stream_outbox.worker.pipeline.job_runner")
    # Given a batch of three users, one of them held by another job
    ada, grace, alan = (
        harness.add_user(f"{name}@example.com", name.title()) for name in ("ada", "grace", "alan")
    )
    rows = {user: harness.add_rows("user", user) for user in (ada, grace, alan)}
    with TargetLocks(harness.redis).hold("user", [alan]):
        # When the batch runs meanwhile
        harness.relay.drain()
        deadline = time.monotonic() + 5
        while harness.status(rows[ada] + rows[grace]) != {Status.DONE}:
            assert time.monotonic() < deadline, harness.rows()
            time.sleep(0.01)

        # Then the free users are upserted at once, without waiting for the held one
        assert [sorted(batch) for batch in harness.gateway.upserts] == [sorted([ada, grace])]
        assert harness.status(rows[alan]) == {Status.DISPATCHED}

    # And the held one follows once free, in the same job (no retry, no job of its own)
    harness.work()
    assert harness.gateway.upserts[1:] == [[alan]]
    assert harness.status(rows[alan]) == {Status.DONE}
    outcomes = [getattr(record, "outcome", None) for record in caplog.records]
    assert outcomes == ["done"]


def test_a_duplicate_job_cannot_undo_done_rows(harness: Harness) -> None:
    # Given a row already reconciled
    ada = harness.add_user("ada@example.com", "Ada")
    (row,) = harness.add_rows("user", ada)
    harness.dispatch_and_work()
    assert harness.rows()[row] == (Status.DONE, None)

    # When a duplicate of its job (a redelivery) fails for good
    harness.gateway.fail(
        "upsert_users", PermanentStreamError("nope", endpoint="UpdateUsers", status=400)
    )
    harness.actor.send("user", [ada], [row], {"rows": {ada: [row]}})
    harness.work()

    # Then the row stays done
    assert harness.rows()[row] == (Status.DONE, None)


def test_a_retried_batch_reconciles_targets_whose_rows_were_settled(harness: Harness) -> None:
    # Given a user reconciled, its row done
    ada = harness.add_user("ada@example.com", "Ada")
    (row,) = harness.add_rows("user", ada)
    harness.dispatch_and_work()
    upserts = harness.gateway.count("upsert_users")

    # When a duplicate of its job runs, it is skipped; when a retry runs (its attempt
    # before may have overlapped another job), the user is upserted again
    harness.actor.send("user", [ada], [row], {"rows": {ada: [row]}})
    harness.work()
    assert harness.gateway.count("upsert_users") == upserts
    harness.actor.send_with_options(args=("user", [ada], [row], {"rows": {ada: [row]}}), retries=1)
    harness.work()
    assert harness.gateway.count("upsert_users") == upserts + 1
    assert harness.rows()[row] == (Status.DONE, None)


# -- conversations ----------------------------------------------------------------------


def test_a_conversation_job_creates_the_invitation_channel(harness: Harness) -> None:
    # Given an invitation that opened a conversation, changed several times
    made = harness.add_invitation("Launch party")
    rows = harness.add_rows("conversation", made.conversation, 3)

    # When the job runs
    assert harness.dispatch_and_work() == 3

    # Then the members were upserted, then the channel created under the invitation's id
    channel_id = f"invitation_{made.invitation}"
    members = sorted([made.organizer, made.guest])
    assert harness.gateway.upserts == [members]
    assert harness.gateway.users[made.organizer]["name"] == "Olga Organizer"
    assert harness.gateway.created == [
        {
            "channel_type": "messaging",
            "channel_id": channel_id,
            "created_by": made.organizer,
            "members": members,
            "data": {
                "conversation_id": made.conversation,
                "name": "Launch party",
                "event_id": made.event,
            },
        }
    ]
    # And nothing else was needed: the new channel is in step
    assert [name for name, _ in harness.gateway.log] == ["upsert_users", "get_or_create_channel"]
    # And the channel is recorded for the conversation, and the rows are done
    assert harness.rt.repo.channels.channel_for(made.conversation) == ChannelRef(
        "messaging", channel_id
    )
    assert harness.status(rows) == {Status.DONE}


def test_a_second_run_of_a_synced_conversation_makes_no_call(harness: Harness) -> None:
    # Given a conversation already in Stream
    made = harness.add_invitation()
    harness.add_rows("conversation", made.conversation)
    harness.dispatch_and_work()
    harness.gateway.log.clear()

    # When it is reconciled again with nothing changed
    rows = harness.add_rows("conversation", made.conversation)
    harness.dispatch_and_work()

    # Then Stream's last answer says it is in step: no call at all
    assert harness.gateway.log == []
    assert harness.status(rows) == {Status.DONE}


@pytest.mark.parametrize("event", ["resync", "reconcile", "backfill", "migrate"])
def test_an_operators_reconcile_reads_stream_whatever_it_last_answered(
    harness: Harness, event: str
) -> None:
    # Given a conversation already in Stream
    made = harness.add_invitation()
    harness.add_rows("conversation", made.conversation)
    harness.dispatch_and_work()
    harness.gateway.log.clear()

    # When an operator's row (a resync, a cut-over's reconcile...) names it
    rows = harness.add_rows("conversation", made.conversation, event=event)
    harness.dispatch_and_work()

    # Then the channel is read from Stream, not taken from its last answer
    assert [name for name, _ in harness.gateway.log] == ["get_or_create_channel"]
    assert harness.status(rows) == {Status.DONE}


def test_a_renamed_event_updates_the_channel_data(harness: Harness) -> None:
    # Given a synced conversation whose event is then renamed
    made = harness.add_invitation("Launch")
    harness.add_rows("conversation", made.conversation)
    harness.dispatch_and_work()
    with Session(harness.engine) as session, session.begin():
        event = session.get(Event, uuid.UUID(made.event))
        assert event is not None
        event.title = "Launch (moved)"
    rows = harness.add_rows("conversation", made.conversation)

    # When the conversation is reconciled
    harness.dispatch_and_work()

    # Then only the name is updated
    channel_id = f"invitation_{made.invitation}"
    assert harness.gateway.data_updates == [
        ("messaging", channel_id, {"name": "Launch (moved)"}, ())
    ]
    assert harness.status(rows) == {Status.DONE}


def test_a_stale_known_users_cache_heals(harness: Harness) -> None:
    # Given members wrongly believed to be in Stream (deleted there by hand, say)
    made = harness.add_invitation()
    harness.redis.sadd("stream_outbox:known_users", made.organizer, made.guest)
    missing = (
        'GetOrCreateChannel failed with error: "The following users are specified in '
        f"channel.members but don't exist: [{made.guest}]\""
    )
    harness.gateway.fail(
        "get_or_create_channel",
        PermanentStreamError(missing, endpoint="GetOrCreateChannel", status=400, code=4),
    )
    rows = harness.add_rows("conversation", made.conversation)

    # When the conversation is reconciled
    harness.dispatch_and_work()

    # Then the rejected create made the members be upserted, and the create was repeated
    assert [name for name, _ in harness.gateway.log] == [
        "get_or_create_channel",
        "upsert_users",
        "get_or_create_channel",
    ]
    assert sorted(harness.gateway.upserts[0]) == sorted([made.organizer, made.guest])
    assert harness.status(rows) == {Status.DONE}


def test_a_member_who_left_while_the_channel_was_made_is_read_again_not_failed(
    harness: Harness,
) -> None:
    # Given a conversation whose second member leaves the database (and is retired in
    # Stream) between the conversation's read and its channel's creation
    first, second = harness.add_user("a@example.com"), harness.add_user("b@example.com")
    conversation = harness.add_conversation(first, second)
    rows = harness.add_rows("conversation", conversation)
    create = harness.gateway.get_or_create_channel

    def racing(*args: Any, **kwargs: Any) -> RemoteChannel:
        if harness.gateway.count("get_or_create_channel") == 0:
            harness.gateway.log.append(("get_or_create_channel", args))
            with Session(harness.engine) as session, session.begin():
                session.execute(
                    delete(ConversationParticipant).where(
                        ConversationParticipant.user_id == uuid.UUID(second)
                    )
                )
                session.execute(delete(User).where(User.id == uuid.UUID(second)))
            missing = (
                'GetOrCreateChannel failed with error: "The following users are specified '
                f"in channel.members but don't exist: [{second}]\""
            )
            raise PermanentStreamError(missing, endpoint="GetOrCreateChannel", status=400, code=4)
        return create(*args, **kwargs)

    harness.gateway.get_or_create_channel = racing  # type: ignore[method-assign]

    # When the conversation is reconciled
    harness.dispatch_and_work()

    # Then it is read again and its channel made with the member still there
    assert harness.status(rows) == {Status.DONE}
    assert [made["members"] for made in harness.gateway.created] == [[first]]


def test_another_rejected_create_is_not_mistaken_for_missing_users(harness: Harness) -> None:
    # Given Stream rejecting the channel for a reason unrelated to its members
    made = harness.add_invitation()
    harness.gateway.fail(
        "get_or_create_channel",
        PermanentStreamError("name is too long", endpoint="GetOrCreateChannel", status=400, code=4),
        times=5,
    )
    rows = harness.add_rows("conversation", made.conversation)

    # When the conversation is reconciled
    harness.dispatch_and_work()

    # Then the create was tried once, and the rows failed with Stream's answer
    assert harness.gateway.count("get_or_create_channel") == 1
    expected = "GetOrCreateChannel HTTP 400 code 4: name is too long"
    assert harness.rows() == {row: (Status.FAILED, expected) for row in rows}


def test_a_conversation_without_members_waits(harness: Harness) -> None:
    # Given a conversation with neither participants nor an invitation yet
    conversation = uuid.uuid4()
    with Session(harness.engine) as session, session.begin():
        session.add(Conversation(id=conversation))
    rows = harness.add_rows("conversation", str(conversation))

    # When it is reconciled, Then nothing is sent to Stream and the row is done
    harness.dispatch_and_work()
    assert harness.gateway.calls == 0
    assert harness.status(rows) == {Status.DONE}


@pytest.mark.parametrize("hard", [False, True])
def test_a_deleted_conversation_deletes_the_channel_named_in_its_payload(
    harness: Harness, hard: bool
) -> None:
    # Given a conversation deleted from the database, its rows naming its channel
    harness.configure(hard_delete_channels=hard)
    gone = str(uuid.uuid4())
    rows = harness.add_rows("conversation", gone) + harness.add_rows(
        "conversation", gone, payload={"channel_type": "messaging", "channel_id": "invitation_42"}
    )

    # When the job runs
    harness.dispatch_and_work()

    # Then Stream is told to delete that channel, and the rows are done
    assert harness.gateway.deleted_channels == [("messaging", "invitation_42", hard)]
    assert harness.status(rows) == {Status.DONE}


def test_a_deleted_conversation_uses_its_mapped_channel_first(harness: Harness) -> None:
    # Given a synced conversation that is then deleted from the database
    made = harness.add_invitation()
    harness.add_rows("conversation", made.conversation)
    harness.dispatch_and_work()
    with Session(harness.engine) as session, session.begin():
        conversation = session.get(Conversation, uuid.UUID(made.conversation))
        session.delete(conversation)
    rows = harness.add_rows("conversation", made.conversation, payload={"channel_id": "other"})

    # When it is reconciled
    harness.dispatch_and_work()

    # Then the channel of the map is deleted, not the payload's guess
    assert harness.gateway.deleted_channels == [
        ("messaging", f"invitation_{made.invitation}", False)
    ]
    assert harness.status(rows) == {Status.DONE}


def test_a_deleted_conversation_never_synced_needs_nothing(harness: Harness) -> None:
    # Given a conversation created and deleted before any sync, with no channel named
    rows = harness.add_rows("conversation", str(uuid.uuid4()))

    # When it is reconciled
    harness.dispatch_and_work()

    # Then Stream is not called and the row is done
    assert harness.gateway.calls == 0
    assert harness.status(rows) == {Status.DONE}


# -- messages ---------------------------------------------------------------------------


def test_a_message_is_mirrored_into_its_conversations_channel(harness: Harness) -> None:
    # Given a message in a conversation that was never synced
    made = harness.add_invitation()
    message = harness.add_message(made.conversation, made.guest, "See you there")
    rows = harness.add_rows("message", message, payload={"conversation_id": made.conversation})

    # When its job runs
    harness.dispatch_and_work()

    # Then the channel was made first, then the message sent under its deterministic id
    channel_id = f"invitation_{made.invitation}"
    assert harness.gateway.count("get_or_create_channel") == 1
    sends = [args for name, args in harness.gateway.log if name == "send_message"]
    assert len(sends) == 1
    channel_type, sent_to, body, author = sends[0]
    assert (channel_type, sent_to, author) == ("messaging", channel_id, made.guest)
    assert (body["id"], body["text"]) == (f"msg-{message}", "See you there")
    assert "system" not in body
    assert harness.status(rows) == {Status.DONE}


def _mirrored_message(harness: Harness) -> tuple[str, int, dict[str, Any]]:
    """A message of an invitation's conversation, mirrored: its id, its done row, the
    row's payload."""
    made = harness.add_invitation()
    message = harness.add_message(made.conversation, made.guest, "See you there")
    payload = {"conversation_id": made.conversation}
    (row,) = harness.add_rows("message", message, payload=payload)
    harness.dispatch_and_work()
    return message, row, payload


def test_a_message_job_dispatched_again_after_its_rows_settled_calls_stream_no_more(
    harness: Harness,
) -> None:
    # Given a message mirrored, its row done
    message, row, payload = _mirrored_message(harness)
    calls = harness.gateway.calls

    # When a duplicate of its job runs (dispatched again while it waited in the queue)
    harness.actor.send("message", [message], [row], payload)
    harness.work()

    # Then it calls Stream no more, and the row stays done
    assert harness.gateway.calls == calls
    assert harness.rows()[row] == (Status.DONE, None)


def test_a_retried_message_job_reconciles_though_its_rows_were_settled(
    harness: Harness,
) -> None:
    # Given a message mirrored, its row done, then gone from the database while Stream
    # still holds it: the attempt before this retry sent it after an overlapping job (its
    # lock lost while held) had read the database and settled the row
    message, row, payload = _mirrored_message(harness)
    with harness.engine.begin() as conn:
        conn.execute(delete(Message).where(Message.id == uuid.UUID(message)))

    # When the job's retry runs (Dramatiq counts it in the message's options)
    harness.actor.send_with_options(args=("message", [message], [row], payload), retries=1)
    harness.work()

    # Then it read the database again and deleted the message in Stream
    assert harness.gateway.count("delete_message") == 1
    assert harness.rows()[row] == (Status.DONE, None)


def test_a_message_without_sender_is_sent_as_a_system_message(harness: Harness) -> None:
    # Given a system message (no sender) in a synced conversation
    made = harness.add_invitation()
    harness.add_rows("conversation", made.conversation)
    harness.dispatch_and_work()
    message = harness.add_message(made.conversation, None, "Event moved")
    rows = harness.add_rows("message", message)

    # When its job runs
    harness.dispatch_and_work()

    # Then the system user exists in Stream and the message is flagged as system
    sends = [args for name, args in harness.gateway.log if name == "send_message"]
    assert len(sends) == 1
    channel_type, sent_to, body, author = sends[0]
    assert (channel_type, sent_to) == ("messaging", f"invitation_{made.invitation}")
    assert author == "stream-outbox-system"
    assert (body["id"], body["text"], body["system"]) == (f"msg-{message}", "Event moved", True)
    assert "stream-outbox-system" in harness.gateway.users
    assert harness.status(rows) == {Status.DONE}


def test_mirroring_off_sends_nothing(harness: Harness) -> None:
    # Given mirroring turned off
    harness.configure(mirror_messages=False)
    made = harness.add_invitation()
    message = harness.add_message(made.conversation, made.guest, "hi")
    rows = harness.add_rows("message", message)

    # When its job runs, Then Stream is not called and the row is done
    harness.dispatch_and_work()
    assert harness.gateway.calls == 0
    assert harness.status(rows) == {Status.DONE}


def test_a_batch_stopped_midway_hands_the_rest_to_a_new_job_on_its_own_broker(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stream_outbox.worker.pipeline.job_runner")
    # Given two conversations in one job; Stream refuses the first channel (400) and is
    # unavailable for the second's first try
    conversations = [
        harness.add_conversation(
            harness.add_user(f"a{n}@example.com"), harness.add_user(f"b{n}@example.com")
        )
        for n in range(2)
    ]
    refused, retried = (harness.add_rows("conversation", cid) for cid in conversations)
    harness.gateway.fail(
        "get_or_create_channel",
        PermanentStreamError("bad channel", endpoint="GetOrCreateChannel", status=400, code=4),
    )
    harness.gateway.fail("get_or_create_channel", unavailable())

    # When the job runs (and what it hands on, on the harness's own broker)
    harness.dispatch_and_work()
    harness.work()

    # Then the refused conversation failed alone, and the other one got its channel
    assert harness.rows()[refused[0]][0] == Status.FAILED
    assert "bad channel" in (harness.rows()[refused[0]][1] or "")
    assert harness.status(retried) == {Status.DONE}
    assert harness.gateway.count("get_or_create_channel") == 3
    # And the rest went on as a new job (not as a retry of the whole one)
    outcomes = [getattr(record, "outcome", None) for record in caplog.records]
    assert outcomes.count("continued") == 1 and "retry" not in outcomes
