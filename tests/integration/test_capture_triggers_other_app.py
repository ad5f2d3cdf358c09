"""Triggers generated from the other app's binding: its names, soft deletes and avatar table.

``tests/apps/other_app``: integer account ids, ``email_address``, the name on the account row
(computed with the email), the avatar from ``photos`` (``user_sources``), ``deleted_at``
and ``left_at`` marks. The same transactions through listener sessions and through
plain sessions with the triggers installed leave the same targets, transaction by
transaction, and the same events for users and messages (a soft delete is a
``delete``, clearing the mark a ``restore``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks.triggers import drop_triggers, install_triggers
from stream_outbox.worker.operations.migrate import upgrade
from tests.apps.other_app.chat_binding import binding
from tests.apps.other_app.db import create_tables, engine_for, installed_sessions, plain_sessions
from tests.apps.other_app.models import (
    Account,
    Meetup,
    MeetupInvite,
    Photo,
    Post,
    Thread,
    ThreadMember,
)
from tests.integration.test_capture_triggers import Rows, rows_by_transaction
from tests.support.database import empty_database

NOW = datetime(2026, 11, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def app_engine() -> Iterator[Engine]:
    """A database of the other app's own tables and the outbox's."""
    with empty_database("stream_outbox_other_triggers") as url:
        upgrade(url)
        engine = engine_for(url)
        create_tables(engine)
        yield engine
        engine.dispose()


def story(base: int) -> tuple[list[Callable[[Session], None]], dict[str, str]]:
    """The other app's transactions; ids of this run by name."""
    host, guest, meetup, invite = base + 1, base + 2, base + 3, base + 4
    thread, post = uuid.uuid4(), f"post-{base}"
    names = {str(host): "host", str(guest): "guest", str(thread): "thread", post: "post"}

    def sign_up(s: Session) -> None:
        s.add_all(
            [
                Account(id=host, email_address=f"{host}@x", name="Host"),
                Account(id=guest, email_address=f"{guest}@x"),
            ]
        )

    def meet(s: Session) -> None:
        s.add_all([Meetup(id=meetup, host_id=host, name="Meetup"), Thread(id=thread)])
        s.flush()
        s.add_all(
            [
                ThreadMember(thread_id=thread, account_id=host),
                ThreadMember(thread_id=thread, account_id=guest),
                MeetupInvite(id=invite, meetup_id=meetup, guest_id=guest, thread_id=thread),
            ]
        )

    def seen(s: Session) -> None:  # none of Stream's business
        s.get(Account, host).last_seen_at = NOW  # type: ignore[union-attr]

    def photo(s: Session) -> None:
        s.add(Photo(account_id=guest, url="https://example.com/g.png"))

    def rename(s: Session) -> None:
        s.get(Account, guest).name = "Guest"  # type: ignore[union-attr]
        s.get(Meetup, meetup).name = "Meetup!"  # type: ignore[union-attr]

    def post_and_edit(s: Session) -> None:
        s.add(Post(id=post, thread_id=thread, author_id=host, body="hi"))
        s.flush()
        s.get(Post, post).body = "hello"  # type: ignore[union-attr]

    def unpost(s: Session) -> None:
        s.get(Post, post).deleted_at = NOW  # type: ignore[union-attr]

    def leave(s: Session) -> None:
        s.get(ThreadMember, (thread, guest)).left_at = NOW  # type: ignore[union-attr]

    def delete_guest(s: Session) -> None:
        s.get(Account, guest).deleted_at = NOW  # type: ignore[union-attr]

    def restore_guest(s: Session) -> None:
        s.get(Account, guest).deleted_at = None  # type: ignore[union-attr]

    def close(s: Session) -> None:
        s.get(Thread, thread).deleted_at = NOW  # type: ignore[union-attr]

    steps = [sign_up, meet, seen, photo, rename, post_and_edit, unpost, leave]
    return [*steps, delete_guest, restore_guest, close], names


def run(factory: sessionmaker[Session], engine: Engine, base: int) -> list[Rows]:
    steps, names = story(base)
    result = []
    for step in steps:
        with factory() as session:
            step(session)
            session.commit()
        result.append(
            sorted(
                (kind, names.get(target, target), event, {})
                for rows in rows_by_transaction(engine)
                for kind, target, event, _ in rows
            )
        )
    return result


def test_the_other_app_s_triggers_write_what_its_listeners_write(app_engine: Engine) -> None:
    by_listeners = run(installed_sessions(app_engine), app_engine, 1000)
    with app_engine.begin() as conn:
        install_triggers(conn, binding)
    try:
        by_triggers = run(plain_sessions(app_engine), app_engine, 2000)
    finally:
        with app_engine.begin() as conn:
            drop_triggers(conn)

    for step, (mine, theirs) in enumerate(zip(by_triggers, by_listeners, strict=True)):
        assert {row[:2] for row in mine} == {row[:2] for row in theirs}, step
        exact = [row for row in mine if row[0] in ("user", "message")]
        assert exact == [row for row in theirs if row[0] in ("user", "message")], step
    assert by_triggers[2] == [], "last_seen_at writes nothing"
    assert by_triggers[3] == [("user", "guest", "insert", {})], "a photo reconciles its account"
    assert ("message", "post", "delete", {}) in by_triggers[6], "a soft delete is a delete"
    assert ("user", "guest", "delete", {}) in by_triggers[8]
    assert ("conversation", "thread", "update", {}) in by_triggers[8], "its channels change"
    assert ("user", "guest", "restore", {}) in by_triggers[9]


def test_a_text_id_holding_the_separator_still_writes_one_row_per_target(
    app_engine: Engine,
) -> None:
    odd, plain = "post\x1fodd", "post-plain"
    with app_engine.begin() as conn:
        install_triggers(conn, binding)
    try:
        with Session(app_engine) as session:
            session.add(Account(id=9001, email_address="odd@x"))
            thread = uuid.uuid4()
            session.add(Thread(id=thread))
            session.flush()
            for post in (odd, odd, plain):  # the odd one written, deleted and written again
                session.add(Post(id=post, thread_id=thread, author_id=9001, body="a"))
                session.flush()
                if post == odd:
                    session.delete(session.get(Post, post))
                    session.flush()
            session.add(Post(id=odd, thread_id=thread, author_id=9001, body="c"))
            session.flush()
            session.get(Post, odd).deleted_at = NOW  # type: ignore[union-attr]
            session.commit()
        [rows] = rows_by_transaction(app_engine)
    finally:
        with app_engine.begin() as conn:
            drop_triggers(conn)
    assert sorted(row for row in rows if row[0] == "message") == [
        ("message", odd, "delete", {"conversation_id": str(thread)}),
        ("message", plain, "insert", {"conversation_id": str(thread)}),
    ]
