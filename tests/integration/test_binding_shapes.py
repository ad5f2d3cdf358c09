"""Bindings of apps shaped unlike the reference: what they read and what capture writes.

The app is ``tests/apps/shapes.py``; real PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import Binding, channel_map, install, outbox, reads
from stream_outbox.app_hooks.binding import BindingError
from tests.apps.shapes import (
    BINDING,
    FIELDS,
    ROLES,
    Account,
    Base,
    Invite,
    Meetup,
    Member,
    Photo,
    Post,
    Thread,
)

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def app_engine(engine: Engine) -> Iterator[Engine]:
    Base.metadata.create_all(engine)
    yield engine
    Base.metadata.drop_all(engine)


@pytest.fixture()
def app(app_engine: Engine) -> Iterator[sessionmaker[Session]]:
    """A session factory of the app, its changes captured through the binding."""
    factory = sessionmaker(app_engine, expire_on_commit=False)
    install(factory, BINDING)
    yield factory
    names = ", ".join(f'"{t.name}"' for t in [*Base.metadata.sorted_tables, outbox, channel_map])
    with app_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def rows(engine: Engine) -> list[tuple[str, str, str, dict[str, Any]]]:
    query = select(outbox.c.target_kind, outbox.c.target_id, outbox.c.event, outbox.c.payload)
    with engine.connect() as conn:
        found = conn.execute(query.order_by(outbox.c.id)).all()
    return [(kind, tid, event, payload) for kind, tid, event, payload in found]


def clear_outbox(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(outbox.delete())


def a_thread(session: Session, *accounts: Account) -> Thread:
    thread = Thread()
    session.add(thread)
    session.flush()
    session.add_all(Member(thread_id=thread.id, account_id=a.id) for a in accounts)
    return thread


# -- reads -------------------------------------------------------------------------------


def test_the_name_and_image_are_computed_from_two_columns_and_another_table(
    app: sessionmaker[Session],
) -> None:
    # Given accounts with and without first and last names, one with two photos
    with app.begin() as session:
        ada = Account(email_address="ada@example.com", first_name="Ada", last_name="Lovelace")
        bob = Account(email_address="bob@example.com")
        session.add_all([ada, bob])
        session.flush()
        session.add_all([Photo(account_id=ada.id, url=u) for u in ("https://a/1", "https://a/2")])
    # When the binding reads them (by their ids as text, as targets name them)
    with app.kw["bind"].connect() as conn:
        users = reads.desired_users(BINDING, conn, [str(ada.id), str(bob.id), "not-a-number"])
    # Then the name is the two columns joined, else the email; the image the newest photo
    assert users[str(ada.id)].as_stream() == {
        "id": str(ada.id),
        "name": "Ada Lovelace",
        "image": "https://a/2",
    }
    assert users[str(bob.id)].as_stream() == {"id": str(bob.id), "name": "bob@example.com"}
    assert "not-a-number" not in users


def test_soft_deleted_rows_read_as_deleted(app: sessionmaker[Session]) -> None:
    # Given a thread of three accounts: one deleted, one who left; a deleted thread; posts
    with app.begin() as session:
        ada, bob, cy = (Account(email_address=f"{n}@example.com") for n in ("ada", "bob", "cy"))
        session.add_all([ada, bob, cy])
        session.flush()
        live, gone = a_thread(session, ada, bob, cy), a_thread(session, ada)
        gone.deleted_at = NOW
        bob.deleted_at = NOW
        session.flush()
        session.get(Member, (live.id, cy.id)).left_at = NOW  # type: ignore[union-attr]
        session.add_all(
            [
                Post(key="p-1", thread_id=live.id, author_id=ada.id, body="hi"),
                Post(key="p-2", thread_id=live.id, author_id=ada.id, body="x", deleted_at=NOW),
            ]
        )
    with app.kw["bind"].connect() as conn:
        users = reads.desired_users(BINDING, conn, [str(ada.id), str(bob.id)])
        channels = reads.desired_channels(BINDING, conn, [str(live.id), str(gone.id)])
        messages = reads.desired_messages(BINDING, conn, ["p-1", "p-2"])
        ids = reads.live_ids(BINDING, conn, "conversation")
    # Then the deleted account, the deleted thread and the deleted post are absent
    assert set(users) == {str(ada.id)}
    assert set(channels) == {str(live.id)} == set(ids)
    assert set(messages) == {"p-1"}
    # and the thread's members are those neither deleted nor gone
    assert channels[str(live.id)].members == (str(ada.id),)


def test_an_invitation_names_the_channel_after_its_event(app: sessionmaker[Session]) -> None:
    # Given a meetup's invitation that opened a thread
    with app.begin() as session:
        host, guest = Account(email_address="h@example.com"), Account(email_address="g@e.com")
        session.add_all([host, guest])
        session.flush()
        meetup = Meetup(host_id=host.id, name="Launch")
        session.add(meetup)
        session.flush()
        thread = a_thread(session, host, guest)
        session.add(Invite(meetup_id=meetup.id, guest_id=guest.id, thread_id=thread.id))
    with app.kw["bind"].connect() as conn:
        channel = reads.desired_channels(BINDING, conn, [str(thread.id)])[str(thread.id)]
    # Then the channel is the event's, created by its host
    assert channel.data == {"conversation_id": str(thread.id), "name": "Launch", "event_id": "1"}
    assert channel.created_by == str(host.id)


# -- capture ----------------------------------------------------------------------------


def test_columns_the_name_is_computed_from_and_the_other_table_are_captured(
    app: sessionmaker[Session],
) -> None:
    engine = app.kw["bind"]
    with app.begin() as session:
        ada = Account(email_address="ada@example.com")
        session.add(ada)
    clear_outbox(engine)
    # When the first name changes, Then the account is reconciled
    with app.begin() as session:
        session.get(Account, ada.id).first_name = "Ada"  # type: ignore[union-attr]
    assert [r[:3] for r in rows(engine)] == [("user", str(ada.id), "update")]
    clear_outbox(engine)
    # When a photo is added, Then the account it belongs to is reconciled
    with app.begin() as session:
        session.add(Photo(account_id=ada.id, url="https://a/1"))
    assert [r[:3] for r in rows(engine)] == [("user", str(ada.id), "insert")]
    clear_outbox(engine)
    # When the photo is deleted, Then the account is updated (not deleted)
    with app.begin() as session:
        session.delete(session.scalars(select(Photo)).one())
    assert [r[:3] for r in rows(engine)] == [("user", str(ada.id), "update")]


def test_setting_a_soft_delete_mark_is_captured_as_a_deletion(app: sessionmaker[Session]) -> None:
    engine = app.kw["bind"]
    with app.begin() as session:
        ada, bob = Account(email_address="ada@example.com"), Account(email_address="b@e.com")
        session.add_all([ada, bob])
        session.flush()
        thread = a_thread(session, ada, bob)
        session.add(Post(key="p-1", thread_id=thread.id, author_id=ada.id, body="hi"))
    clear_outbox(engine)
    # When an account is soft-deleted, Then it is a deletion, and its threads change too
    with app.begin() as session:
        session.get(Account, bob.id).deleted_at = NOW  # type: ignore[union-attr]
    assert [r[:3] for r in rows(engine)] == [
        ("conversation", str(thread.id), "update"),
        ("user", str(bob.id), "delete"),
    ]
    with engine.begin() as conn:
        conn.execute(
            channel_map.insert().values(
                conversation_id=str(thread.id), channel_type="messaging", channel_id="legacy_x"
            )
        )
    clear_outbox(engine)
    # When a post and the thread are soft-deleted, Then each is a deletion with what it needs
    with app.begin() as session:
        session.get(Post, "p-1").deleted_at = NOW  # type: ignore[union-attr]
        session.get(Thread, thread.id).deleted_at = NOW  # type: ignore[union-attr]
    found = {(kind, tid): (event, payload) for kind, tid, event, payload in rows(engine)}
    assert found[("message", "p-1")] == ("delete", {"conversation_id": str(thread.id)})
    # (the thread's channel, from the map: the worker deletes it by that id)
    assert found[("conversation", str(thread.id))] == (
        "delete",
        {"channel_type": "messaging", "channel_id": "legacy_x"},
    )
    clear_outbox(engine)
    # When the account comes back, Then it is a restore, and its threads change too
    with app.begin() as session:
        session.get(Account, bob.id).deleted_at = None  # type: ignore[union-attr]
    assert [r[:3] for r in rows(engine)] == [
        ("conversation", str(thread.id), "update"),
        ("user", str(bob.id), "restore"),
    ]
    clear_outbox(engine)
    # When a member leaves (left_at), Then the thread is reconciled
    with app.begin() as session:
        session.get(Member, (thread.id, ada.id)).left_at = NOW  # type: ignore[union-attr]
    assert [r[:3] for r in rows(engine)] == [("conversation", str(thread.id), "delete")]


# -- the binding refuses what does not fit -----------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fields": {}}, "Account has no attribute 'email' (the user's email)"),
        ({"fields": {**FIELDS, "account": {}}}, "'account' is not a field of 'account'"),
        ({"fields": {**FIELDS, "user": {"mail": "x"}}}, "'mail' is not a field of 'user'"),
        ({"fields": {**FIELDS, "message": {**FIELDS["message"], "id": None}}}, "cannot be None"),
        ({"fields": FIELDS, "soft_delete": {"user": "removed"}}, "Account has no attribute"),
        ({"fields": FIELDS, "soft_delete": {"profile": "x"}}, "'profile' is not a role"),
        ({"fields": FIELDS, "user_sources": {Photo: "owner"}}, "Photo has no attribute 'owner'"),
    ],
)
def test_a_binding_that_does_not_fit_the_models_is_refused(
    options: dict[str, Any], message: str
) -> None:
    computed = {"user_name": BINDING.user_name, "user_image": BINDING.user_image}
    with pytest.raises(BindingError, match=re.escape(message)):
        Binding(**ROLES, **{**computed, **options})


def test_without_a_name_function_the_account_needs_its_name_attribute() -> None:
    # Given no profile and no name function, Then full_name must be on the account row
    with pytest.raises(BindingError, match="Account has no attribute 'full_name'"):
        Binding(**ROLES, fields=FIELDS, user_image=BINDING.user_image)
    # unless the app says it has none (the email names the user then)
    fields = {**FIELDS, "user": {**FIELDS["user"], "full_name": None}}
    Binding(**ROLES, fields=fields, user_image=BINDING.user_image)
