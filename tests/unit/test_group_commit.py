"""The receiver's group commit (pure, with a stand-in inbox): concurrent events stored in
one batch, each request told whether its event was new, a cancelled request harmless."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any, cast

from stream_outbox.worker.inbound.inbox import Inbox
from stream_outbox.worker.inbound.inbox_event import InboxEvent, event_from
from stream_outbox.worker.inbound.receiver import GroupCommit


class SlowInbox:
    """Records each batch; holds the first until released (a commit in progress)."""

    def __init__(self) -> None:
        self.batches: list[list[str | None]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def store_batch(self, events: Sequence[InboxEvent]) -> list[bool]:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(5)
        self.batches.append([e.webhook_id for e in events])
        return [e.webhook_id != "old" for e in events]


def event(webhook_id: str) -> InboxEvent:
    return event_from({"type": "message.new"}, webhook_id)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def committing(inbox: SlowInbox) -> None:
    """Until the first batch's commit has begun."""
    while not inbox.entered.is_set():
        await asyncio.sleep(0.001)


def test_concurrent_events_share_a_batch_and_learn_whether_they_were_new() -> None:
    inbox = SlowInbox()
    commit = GroupCommit(cast(Inbox, inbox))

    async def scenario() -> list[bool]:
        first = asyncio.create_task(commit.store(event("a")))
        await committing(inbox)  # the first batch is committing: the rest wait together
        rest = [asyncio.create_task(commit.store(event(w))) for w in ("b", "old", "c")]
        await asyncio.sleep(0)  # they are all queued
        inbox.release.set()
        return [await first, *[await task for task in rest]]

    assert run(scenario()) == [True, True, False, True]
    assert inbox.batches == [["a"], ["b", "old", "c"]]


def test_a_request_cancelled_while_waiting_leaves_the_others_answered() -> None:
    inbox = SlowInbox()
    commit = GroupCommit(cast(Inbox, inbox))

    async def scenario() -> bool:
        gone = asyncio.create_task(commit.store(event("gone")))
        kept = asyncio.create_task(commit.store(event("kept")))
        await committing(inbox)
        gone.cancel()
        inbox.release.set()
        return await kept

    assert run(scenario()) is True
    assert inbox.batches == [["gone", "kept"]]
