"""The capture triggers' SQL, generated from bindings (pure: no database).

What each table gets, which columns an update trigger fires on, and the bindings that
cannot be expressed as triggers, refused in one line naming the model and attribute.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import pytest
from sqlalchemy import ForeignKey, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column

from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.reference import (
    REFERENCE_BINDING,
    Conversation,
    ConversationParticipant,
    Event,
    EventParticipant,
    EventProposal,
    Message,
    Profile,
    User,
)
from stream_outbox.app_hooks.trigger_sql import TableTriggers, TriggerError, table_triggers
from tests.apps.other_app.chat_binding import binding as other_binding


class Base(DeclarativeBase):
    pass


class ComputedUser(Base):
    """A user whose email the app computes in SQL: no column for a trigger to watch."""

    __tablename__ = "computed_users"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    raw_email: Mapped[str] = mapped_column(String(320))
    email: Mapped[str] = column_property(func.lower(raw_email))


class Request(Base):
    """Invitations and proposals in one table (single-table inheritance)."""

    __tablename__ = "requests"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"))
    user_id: Mapped[uuid.UUID] = mapped_column()
    proposer_id: Mapped[uuid.UUID] = mapped_column()
    conversation_id: Mapped[uuid.UUID | None] = mapped_column()
    __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_on": "kind"}


class Invite(Request):
    __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "invite"}


class Proposal(Request):
    __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "proposal"}


def reference_with(**roles: Any) -> Binding:
    models: dict[str, Any] = {
        "user": User,
        "profile": Profile,
        "event": Event,
        "conversation": Conversation,
        "participant": ConversationParticipant,
        "message": Message,
        "invitation": EventParticipant,
        "proposal": EventProposal,
    }
    return Binding(**{**models, **roles})


def by_table(binding: Binding) -> dict[str, TableTriggers]:
    return {table.label: table for table in table_triggers(binding)}


def test_each_table_gets_insert_update_and_delete_triggers_but_events_no_insert() -> None:
    tables = by_table(REFERENCE_BINDING)
    assert sorted(tables) == [
        "conversation_participants",
        "conversations",
        "event_participants",
        "event_proposals",
        "events",
        "messages",
        "profiles",
        "users",
    ]
    assert [t.op for t in tables["events"].triggers] == ["update", "delete"]  # nothing new refers
    assert [t.op for t in tables["users"].triggers] == ["insert", "update", "delete"]


def test_a_participant_s_update_trigger_fires_on_its_keys_only_not_on_a_read_time() -> None:
    [update] = [
        t
        for t in by_table(REFERENCE_BINDING)["conversation_participants"].triggers
        if t.op == "update"
    ]
    assert (
        "AFTER UPDATE OF conversation_id, user_id ON conversation_participants"
        in update.create_trigger
    )
    assert "last_read_at" not in update.create_trigger + update.body
    assert "WHEN (OLD.conversation_id IS DISTINCT FROM NEW.conversation_id" in update.create_trigger


def test_inserts_and_deletes_are_statement_triggers_over_transition_tables() -> None:
    insert, _, delete, _ = by_table(REFERENCE_BINDING)["conversation_participants"].triggers
    assert "REFERENCING NEW TABLE AS stream_outbox_new FOR EACH STATEMENT" in insert.create_trigger
    assert "REFERENCING OLD TABLE AS stream_outbox_old FOR EACH STATEMENT" in delete.create_trigger
    # one row per conversation, however many rows; none for one written already
    assert "array_agg(DISTINCT r.conversation_id::text)" in insert.body
    assert "GROUP BY kind, id" in delete.body
    assert "ON CONFLICT (target_kind, target_id, capture_tx)" in insert.body


def test_the_other_app_s_names_marks_and_avatar_table_are_honoured() -> None:
    tables = by_table(other_binding)
    [update] = [t for t in tables["accounts"].triggers if t.op == "update"]
    watched = update.create_trigger.split(" ON ")[0]
    assert watched.endswith("UPDATE OF deleted_at, email_address, id, name")  # not last_seen_at
    assert "ev := CASE WHEN OLD.deleted_at IS NULL THEN 'delete' ELSE 'restore' END" in update.body
    assert "thread_members" in update.body and "meetup_invites" in update.body  # its channels
    [photos] = [t for t in tables["photos"].triggers if t.op == "update"]
    assert "UPDATE OF account_id, id, url" in photos.create_trigger
    [posts] = [t for t in tables["posts"].triggers if t.op == "insert"]
    assert "jsonb_build_object('conversation_id', to_jsonb(r.thread_id::text))" in posts.body
    assert "pg_trigger_depth() > 1" in posts.body  # cascades go with their channel or user


def test_a_computed_attribute_is_refused_naming_it() -> None:
    binding = reference_with(user=ComputedUser)
    with pytest.raises(TriggerError, match=r"^ComputedUser\.email is not a column of its table"):
        table_triggers(binding)


def test_two_roles_in_one_table_are_refused() -> None:
    binding = reference_with(invitation=Invite, proposal=Proposal)
    with pytest.raises(
        TriggerError,
        match=r"^Proposal and Invite share the table requests: triggers cannot tell",
    ):
        table_triggers(binding)


def test_long_table_names_get_short_distinct_function_names() -> None:
    class Long(Base):
        __tablename__ = "conversation_participants_of_the_very_long_named_application_x"
        conversation_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
        user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)

    names = [
        t.function for t in by_table(reference_with(participant=Long))[Long.__tablename__].triggers
    ]
    assert all(len(name) <= 63 for name in names)
    assert len(set(names)) == 3 and all(name.startswith("stream_outbox_capture_") for name in names)


def test_the_fingerprint_follows_the_binding() -> None:
    without_email = reference_with(fields={"user": {"email": None}})
    before = {t.function: t.fingerprint for t in by_table(REFERENCE_BINDING)["users"].triggers}
    after = {t.function: t.fingerprint for t in by_table(without_email)["users"].triggers}
    assert (
        before["stream_outbox_capture_users_insert"] == after["stream_outbox_capture_users_insert"]
    )
    assert (
        before["stream_outbox_capture_users_update"] != after["stream_outbox_capture_users_update"]
    )


def test_a_participant_s_read_time_has_a_row_trigger_of_its_own() -> None:
    [read] = [
        t
        for t in by_table(REFERENCE_BINDING)["conversation_participants"].triggers
        if t.op == "read"
    ]
    assert read.create_trigger.startswith(
        "CREATE TRIGGER stream_outbox_capture_read AFTER UPDATE OF last_read_at "
        "ON conversation_participants FOR EACH ROW WHEN (NEW.last_read_at IS NOT NULL AND "
        "OLD.last_read_at IS DISTINCT FROM NEW.last_read_at)"
    )
    # one row of its own (no capture_tx: it neither merges into nor holds back the
    # transaction's membership row), carrying who read
    assert "jsonb_build_object('reads', jsonb_build_array(NEW.user_id::text))" in read.body
    assert "capture_tx" not in read.body
    assert read.columns == (
        "conversation_participants.conversation_id",
        "conversation_participants.user_id",
        "conversation_participants.last_read_at",
    )
