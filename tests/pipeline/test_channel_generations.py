"""A conversation back after Stream deleted its channel gets its messages again; a
message back after Stream deleted it is undeleted.

Stream shows a deleted channel created again empty, and refuses the id of a message it
held, even deleted. A thread of the shapes app (soft deletes) whose channel was deleted
and which is then restored gets its channel's next generation: every live post sent
again under that generation's ids (``msg1-...``), in order, and later edits and
deletions reach those. Against the emulator, through the real SDK.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks.lookup import channel_for_conversation
from stream_outbox.app_hooks.on_demand import MigrationState, migration_status, request_migration
from stream_outbox.worker import runtime
from stream_outbox.worker.sync import conversations as sync_conversations
from stream_outbox.worker.sync.conversations import reconcile_conversations
from stream_outbox.worker.verify.target import describe
from tests.apps.shapes import BINDING, Account, Member, Post, Thread, ada_and_bob_in_a_thread
from tests.pipeline.test_user_lifecycle import NOW
from tests.support.pipeline import Pipeline, drift


def _posts(pipeline: Pipeline) -> dict[str, str]:
    """The channel's messages Stream shows (not deleted), id -> text, in Stream's order."""
    state = pipeline.emu.state()
    [cid] = state["channels"]
    return {m["id"]: m["text"] for m in state["messages"].get(cid, []) if not m.get("deleted_at")}


def _channel(pipeline: Pipeline) -> dict[str, Any]:
    [channel] = pipeline.emu.state()["channels"].values()
    return channel


def _post(n: int, thread: Thread, author: Account) -> Post:
    """Post ``p-{n}`` with text ``post {n}``, ``n`` minutes after NOW."""
    return Post(
        key=f"p-{n}",
        thread_id=thread.id,
        author_id=author.id,
        body=f"post {n}",
        posted_at=NOW + timedelta(minutes=n),
    )


def _two_posts_in_stream(
    pipeline: Pipeline, shapes: sessionmaker[Session]
) -> tuple[Account, Account, Thread]:
    """Ada and bob in a thread, a post each (p-1, p-2), synced."""
    with shapes.begin() as session:
        ada, bob, thread = ada_and_bob_in_a_thread(session)
        session.add_all([_post(1, thread, ada), _post(2, thread, bob)])
    pipeline.drain()
    return ada, bob, thread


def _set_deleted(shapes: sessionmaker[Session], thread: Any, deleted: bool) -> None:
    with shapes.begin() as session:
        session.get_one(Thread, thread).deleted_at = NOW if deleted else None


def test_a_restored_thread_gets_its_posts_again_under_a_new_generation(
    pipeline: Pipeline, shapes: sessionmaker[Session]
) -> None:
    # Given a thread of two with two posts in Stream
    ada, bob, thread = _two_posts_in_stream(pipeline, shapes)
    assert _posts(pipeline) == {"msg-p-1": "post 1", "msg-p-2": "post 2"}

    # When the thread is soft-deleted: its channel is deleted, once
    _set_deleted(shapes, thread.id, True)
    pipeline.drain()
    assert _channel(pipeline)["deleted_at"]

    # When it is restored, with a new post in the same transaction
    with shapes.begin() as session:
        session.get_one(Thread, thread.id).deleted_at = None
        session.add(_post(3, thread, ada))
    # (`admin show` tells the generation its next reconcile makes, and its posts' ids)
    shown = describe(
        pipeline.engine, pipeline.settings, BINDING, kind="conversation", target_id=str(thread.id)
    )
    assert shown["database"]["generation"] == 1
    assert shown["database"]["history_copy"].startswith("due")
    post = describe(pipeline.engine, pipeline.settings, BINDING, kind="message", target_id="p-3")
    assert post["database"]["id"] == "msg1-p-3"
    # (its channel, deleted in Stream, is not synced: opening it asks for it first)
    with pipeline.engine.begin() as conn:
        status = migration_status(conn, str(thread.id), BINDING)
        assert status is not None and status.state == MigrationState.NOT_REQUESTED
        lookup = channel_for_conversation(conn, str(thread.id), BINDING)
        assert lookup is not None and not lookup.synced
        requested = request_migration(conn, str(thread.id), BINDING)
        assert requested is not None and requested.state == MigrationState.PENDING
    pipeline.drain()
    with pipeline.engine.connect() as conn:
        status = migration_status(conn, str(thread.id), BINDING)
        assert status is not None and status.synced
        lookup = channel_for_conversation(conn, str(thread.id), BINDING)
        assert lookup is not None and lookup.synced
    # Then the channel is back with its members and every post, under generation 1's ids,
    # in the database's order: the new post waited for the copy of the older ones
    channel = _channel(pipeline)
    assert not channel["deleted_at"]
    assert sorted(channel["members"]) == sorted([str(ada.id), str(bob.id)])
    assert list(_posts(pipeline).items()) == [
        ("msg1-p-1", "post 1"),
        ("msg1-p-2", "post 2"),
        ("msg1-p-3", "post 3"),
    ]
    assert {r["status"] for r in pipeline.rows()} == {"done"}

    # When a post is edited and another deleted: they reach the new generation's messages
    with shapes.begin() as session:
        session.get_one(Post, "p-1").body = "post 1, edited"
        session.get_one(Post, "p-2").deleted_at = NOW
    pipeline.drain()
    assert _posts(pipeline) == {"msg1-p-1": "post 1, edited", "msg1-p-3": "post 3"}
    assert drift(pipeline, binding=BINDING) == []

    # And a second delete and restore makes generation 2
    _set_deleted(shapes, thread.id, True)
    pipeline.drain()
    _set_deleted(shapes, thread.id, False)
    pipeline.drain()
    assert _posts(pipeline) == {"msg2-p-1": "post 1, edited", "msg2-p-3": "post 3"}
    assert drift(pipeline, binding=BINDING) == []
    assert {r["status"] for r in pipeline.rows()} == {"done"}


def test_a_thread_back_before_its_channel_s_deletion_reached_stream_gets_it_anew(
    pipeline: Pipeline, shapes: sessionmaker[Session]
) -> None:
    # Given a thread whose channel is marked deleted in the map, the call to Stream never
    # made (the worker died between the two): Stream still holds the channel and its post
    with shapes.begin() as session:
        ada, bob, thread = ada_and_bob_in_a_thread(session)
        session.add(_post(1, thread, ada))
    pipeline.drain()
    ref = pipeline.repo.channels.channel_for(str(thread.id))
    assert ref is not None
    pipeline.repo.channels.mark_channel_deleted(str(thread.id), ref)
    assert _posts(pipeline) == {"msg-p-1": "post 1"}
    # When the thread is reconciled (it is in the database: a soft delete undone)
    with shapes.begin() as session:
        session.add(_post(2, thread, bob))
    pipeline.drain()
    # Then the channel was deleted, then created again with both posts of generation 1:
    # none twice, none under an id Stream held
    assert list(_posts(pipeline)) == ["msg1-p-1", "msg1-p-2"]
    assert drift(pipeline, binding=BINDING) == []
    assert {r["status"] for r in pipeline.rows()} == {"done"}
    # and `admin show` tells an operator which ids the channel's messages have
    shown = describe(
        pipeline.engine, pipeline.settings, BINDING, kind="conversation", target_id=str(thread.id)
    )
    assert (shown["database"]["generation"], shown["database"]["history_copy"]) == (1, "done")
    post = describe(pipeline.engine, pipeline.settings, BINDING, kind="message", target_id="p-1")
    assert post["database"] == {"id": "msg1-p-1", "conversation": str(thread.id)}


def test_a_post_restored_from_its_soft_delete_is_back_in_stream(
    pipeline: Pipeline, shapes: sessionmaker[Session]
) -> None:
    # Given two posts in Stream, both soft-deleted in the app (so in Stream too)
    _two_posts_in_stream(pipeline, shapes)
    with shapes.begin() as session:
        for key in ("p-1", "p-2"):
            session.get_one(Post, key).deleted_at = NOW
    pipeline.drain()
    assert _posts(pipeline) == {}
    pipeline.emu.reset_request_counts()
    # When the app restores one, and restores and edits the other
    with shapes.begin() as session:
        session.get_one(Post, "p-1").deleted_at = None
        restored = session.get_one(Post, "p-2")
        restored.deleted_at, restored.body = None, "post 2, edited"
    pipeline.drain()
    # Then Stream undeleted both (it refuses to update a deleted message), the edit kept:
    # one call for a restore, a second for its edit, and none sent again
    assert _posts(pipeline) == {"msg-p-1": "post 1", "msg-p-2": "post 2, edited"}
    counts = pipeline.counts()
    messages = {k: v for k, v in counts.items() if "Message" in k}
    assert messages == {"UndeleteMessage": 2, "UpdateMessagePartial": 1}, counts
    assert {r["status"] for r in pipeline.rows()} == {"done"}
    assert drift(pipeline, binding=BINDING) == []


def test_a_batch_reads_a_restored_thread_again_before_it_makes_its_channel_anew(
    pipeline: Pipeline, shapes: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three threads of ada and bob in Stream, the last two deleted, then restored
    with shapes.begin() as session:
        ada, bob, first = ada_and_bob_in_a_thread(session)
        again, left = Thread(), Thread()
        session.add_all([again, left])
        session.flush()
        for thread in (again, left):
            session.add_all(Member(thread_id=thread.id, account_id=a.id) for a in (ada, bob))
            session.add(_post(1 if thread is again else 2, thread, ada))
    pipeline.drain()
    for thread in (again, left):
        _set_deleted(shapes, thread.id, True)
    pipeline.drain()
    for thread in (again, left):
        _set_deleted(shapes, thread.id, False)
    # and a batch of the three whose snapshot is read before, while the first thread's
    # channel is being brought in step, one restored thread is deleted again and bob
    # leaves the other
    rt = runtime.current()
    first_ref = rt.repo.channels.channel_for(str(first.id))
    assert first_ref is not None
    real = rt.gateway.get_or_create_channel

    def get_or_create_then_change(channel_type: str, channel_id: str, **options: Any) -> Any:
        answer = real(channel_type, channel_id, **options)
        if channel_id == first_ref.channel_id:
            _set_deleted(shapes, again.id, True)
            with shapes.begin() as session:
                session.get_one(Member, (left.id, bob.id)).left_at = NOW
        return answer

    monkeypatch.setattr(rt.gateway, "get_or_create_channel", get_or_create_then_change)
    monkeypatch.setattr(sync_conversations, "SLOW_CALL", math.inf)  # in turn
    # When the batch runs (reading each channel from Stream: the change above hooks the read)
    ids = [str(first.id), str(again.id), str(left.id)]
    result = reconcile_conversations(rt, {cid: {"see_stream": True} for cid in ids})
    assert result.failed == {} and result.error is None
    # Then the thread deleted again keeps its channel deleted, no new generation made
    channels = pipeline.emu.state()["channels"]
    again_ref = rt.repo.channels.channel_for(str(again.id))
    assert again_ref is not None and again_ref.deleted and again_ref.generation == 0
    assert channels[f"{again_ref.channel_type}:{again_ref.channel_id}"]["deleted_at"]
    # and the other is made anew with its members as they are now
    left_ref = rt.repo.channels.channel_for(str(left.id))
    assert left_ref is not None and not left_ref.deleted and left_ref.generation == 1
    assert channels[f"{left_ref.channel_type}:{left_ref.channel_id}"]["members"] == [str(ada.id)]
    # And once every row has run, Stream is in step
    monkeypatch.undo()
    pipeline.drain()
    assert drift(pipeline, gone=[again.id], binding=BINDING) == []
    assert {r["status"] for r in pipeline.rows()} == {"done"}
