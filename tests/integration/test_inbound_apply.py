"""Stream's events applied to the app's tables against real PostgreSQL: each kind once and
again (idempotent), out of order, the conflict rules, soft and hard deletes, apps with
integer and text ids, the mirror's own echoes (nothing written) and capture triggers
writing nothing for what came from Stream."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, text

from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.capture import write_changes
from stream_outbox.app_hooks.changes import Change, Target
from stream_outbox.app_hooks.outbox import channel_map, message_map, outbox
from stream_outbox.app_hooks.outbox import metadata as outbox_metadata
from stream_outbox.app_hooks.reference import (
    REFERENCE_BINDING,
    ConversationParticipant,
    Message,
)
from stream_outbox.app_hooks.reference import Base as ReferenceBase
from stream_outbox.worker.errors import PermanentError
from stream_outbox.worker.inbound.apply import UnknownUser, apply_event
from stream_outbox.worker.inbound.events import BadEvent
from tests.apps import accounts, shapes
from tests.support.database import capture_triggers
from tests.support.inbound import two_in_a_conversation
from tests.support.stream_events import T0, at, channel_event, message_event, read_event

CID = "messaging:inbound-1"


@dataclass
class App:
    """An app's tables with two users in one conversation whose channel is ``CID``."""

    engine: Engine
    binding: Binding
    ada: str
    bob: str
    conversation: str

    def apply(self, event: dict[str, Any]) -> str:
        return apply_event(self.engine, self.binding, event)

    def messages(self) -> list[dict[str, Any]]:
        """The message table's rows as the binding names them, oldest first."""
        b = self.binding
        names = ("id", "conversation_id", "sender_id", "content", "created_at")
        columns = [b.column("message", name).label(name) for name in names]
        mark = b.soft_delete.get("message")
        if mark is not None:
            columns.append(getattr(b.message, mark).label("deleted_at"))
        query = select(*columns).order_by(b.column("message", "created_at"))
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def live_texts(self) -> list[str]:
        return [m["content"] for m in self.messages() if m.get("deleted_at") is None]

    def mapped(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(message_map))]

    def outbox_rows(self) -> list[tuple[str, str, str]]:
        query = select(outbox.c.target_kind, outbox.c.target_id, outbox.c.event)
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query.order_by(outbox.c.id))]

    def snapshot(self) -> dict[str, str]:
        """Every table's whole content, digested: any insert, update or delete shows."""
        tables = {
            *outbox_metadata.sorted_tables,
            *ReferenceBase.metadata.sorted_tables,
            *self.binding.message.metadata.sorted_tables,
        }
        digest = "md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), ''))"
        with self.engine.connect() as conn:
            return {
                table.name: conn.scalar(text(f'SELECT {digest} FROM "{table.name}" t'))
                for table in tables
            }


def _map_channel(conn: Any, conversation: str) -> None:
    kind, _, channel_id = CID.partition(":")
    conn.execute(
        insert(channel_map).values(
            conversation_id=conversation, channel_type=kind, channel_id=channel_id
        )
    )


@pytest.fixture()
def reference(clean_db: Engine) -> App:
    """The reference app (uuid ids, hard deletes, a last-read time)."""
    with clean_db.begin() as conn:
        ada, bob, conversation = two_in_a_conversation(conn, CID)
    return App(clean_db, REFERENCE_BINDING, str(ada), str(bob), str(conversation))


@pytest.fixture()
def shaped(clean_db: Engine) -> Iterator[App]:
    """The shapes app: integer accounts, uuid threads, text post keys without a default
    (Stream's id becomes the key), soft deletes (``deleted_at``)."""
    shapes.Base.metadata.create_all(clean_db)
    try:
        with clean_db.begin() as conn:
            ids = conn.scalars(
                insert(shapes.Account).returning(shapes.Account.id),
                [{"email_address": "ada@e.com"}, {"email_address": "bob@e.com"}],
            ).all()
            thread = uuid.uuid4()
            conn.execute(insert(shapes.Thread).values(id=thread))
            conn.execute(
                insert(shapes.Member), [{"thread_id": thread, "account_id": i} for i in ids]
            )
            _map_channel(conn, str(thread))
        yield App(clean_db, shapes.BINDING, str(ids[0]), str(ids[1]), str(thread))
    finally:
        _drop(clean_db, shapes.Base)


@pytest.fixture()
def numbered(clean_db: Engine) -> Iterator[App]:
    """The accounts app: integer ids from sequences (serial), times as text, hard deletes."""
    accounts.Base.metadata.create_all(clean_db)
    try:
        with clean_db.begin() as conn:
            ids = conn.scalars(
                insert(accounts.Account).returning(accounts.Account.id),
                [{"email_address": "a@e", "name": "Ada"}, {"email_address": "b@e", "name": "Bob"}],
            ).all()
            thread = conn.scalar(
                insert(accounts.Thread)
                .values(created_at=T0.isoformat())
                .returning(accounts.Thread.id)
            )
            conn.execute(
                insert(accounts.Member), [{"thread_id": thread, "account_id": i} for i in ids]
            )
            _map_channel(conn, str(thread))
        yield App(clean_db, accounts.make(), str(ids[0]), str(ids[1]), str(thread))
    finally:
        _drop(clean_db, accounts.Base)


def _drop(engine: Engine, base: Any) -> None:
    names = ", ".join(f'"{t.name}"' for t in base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {names} CASCADE"))


APPS = ["reference", "shaped", "numbered"]


@pytest.fixture(params=APPS)
def app(request: pytest.FixtureRequest) -> App:
    found: App = request.getfixturevalue(request.param)
    return found


# -- message.new ------------------------------------------------------------------------


def test_a_message_sent_in_stream_is_inserted_once_with_its_two_ids(app: App) -> None:
    event = message_event("message.new", CID, "c-1", app.ada, "hello", created=5)
    outcome = app.apply(event)
    assert outcome.startswith("message inserted as ")
    [row] = app.messages()
    assert (str(row["conversation_id"]), str(row["sender_id"])) == (app.conversation, app.ada)
    assert row["content"] == "hello"
    created = row["created_at"]
    created = created if isinstance(created, datetime) else datetime.fromisoformat(created)
    assert created.replace(tzinfo=created.tzinfo or UTC) == datetime.fromisoformat(at(5))
    [mapped] = app.mapped()
    assert (mapped["message_id"], mapped["stream_id"], mapped["born_in"]) == (
        str(row["id"]),
        "c-1",
        "stream",
    )
    # Delivered again (a retry, a catch-up): nothing more
    before = app.snapshot()
    assert app.apply(event) == "message recorded already: nothing to do"
    assert app.snapshot() == before


def test_the_app_generates_the_id_or_takes_streams_where_it_has_no_default(app: App) -> None:
    app.apply(message_event("message.new", CID, "c-key", app.bob, "x"))
    [row] = app.messages()
    if app.binding is shapes.BINDING:  # a text key with no default: Stream's id
        assert row["id"] == "c-key"
    elif app.binding is REFERENCE_BINDING:  # uuid4, the model's default
        assert isinstance(row["id"], uuid.UUID)
    else:  # serial
        assert row["id"] == 1


# -- message.updated and message.deleted; out of order; conflicts -----------------------


def test_an_edit_sets_the_text_once(app: App) -> None:
    app.apply(message_event("message.new", CID, "c-1", app.ada, "first"))
    edit = message_event("message.updated", CID, "c-1", app.ada, "second", updated=10)
    assert app.apply(edit) == "text set"
    before = app.snapshot()
    assert app.apply(edit) == "edit ignored: a later edit was applied"
    assert app.snapshot() == before
    assert app.live_texts() == ["second"]
    assert app.mapped()[0]["updated_at"] == datetime.fromisoformat(at(10))


def test_an_update_before_its_message_new_writes_the_message_and_loses_nothing(
    app: App,
) -> None:
    edit = message_event("message.updated", CID, "c-1", app.ada, "edited", updated=10)
    assert "its update came first" in app.apply(edit)
    assert app.apply(message_event("message.new", CID, "c-1", app.ada, "original")) == (
        "message recorded already: nothing to do"
    )
    assert app.live_texts() == ["edited"]
    assert len(app.messages()) == 1


def test_a_deletion_before_its_message_new_leaves_no_live_message(app: App) -> None:
    gone = message_event("message.deleted", CID, "c-1", app.ada, "x", deleted=20)
    assert "recorded deleted" in app.apply(gone)
    assert app.apply(message_event("message.new", CID, "c-1", app.ada, "x")).startswith(
        "message recorded already"
    )
    edit = message_event("message.updated", CID, "c-1", app.ada, "late", updated=30)
    assert app.apply(edit) == "edit ignored: deleted"
    assert app.live_texts() == []
    assert app.mapped()[0]["deleted_at"] is not None


def test_the_later_edit_wins_and_a_deletion_wins_over_an_edit(app: App) -> None:
    app.apply(message_event("message.new", CID, "c-1", app.ada, "v0"))
    newer = message_event("message.updated", CID, "c-1", app.ada, "v2", updated=20)
    older = message_event("message.updated", CID, "c-1", app.ada, "v1", updated=10)
    app.apply(newer)
    assert app.apply(older) == "edit ignored: a later edit was applied"  # reordered
    assert app.live_texts() == ["v2"]
    assert app.apply(message_event("message.deleted", CID, "c-1", app.ada, "v2", deleted=30)) == (
        "message deleted"
    )
    later = message_event("message.updated", CID, "c-1", app.ada, "v3", updated=40)
    assert app.apply(later) == "edit ignored: deleted"
    assert app.live_texts() == []


def test_a_deletion_is_the_bindings_soft_delete_mark_or_a_hard_delete(app: App) -> None:
    app.apply(message_event("message.new", CID, "c-1", app.ada, "bye"))
    gone = message_event("message.deleted", CID, "c-1", app.ada, "bye", deleted=9)
    assert app.apply(gone) == "message deleted"
    rows = app.messages()
    if app.binding.soft_delete.get("message"):
        [row] = rows
        assert row["deleted_at"] is not None  # the mark
    else:
        assert rows == []
    before = app.snapshot()
    assert app.apply(gone) == "deleted already"
    assert app.snapshot() == before


def test_a_client_edit_or_deletion_of_a_message_born_in_the_app_reaches_its_row(
    reference: App,
) -> None:
    mid = _app_message(reference, "from the app", T0)
    stream_id = f"msg-{mid}"
    edit = message_event("message.updated", CID, stream_id, reference.ada, "fixed", updated=5)
    assert reference.apply(edit) == "text set (born in the app)"
    assert reference.live_texts() == ["fixed"]
    gone = message_event("message.deleted", CID, stream_id, reference.ada, deleted=6)
    assert reference.apply(gone) == "deleted (born in the app)"
    assert reference.messages() == []
    # its map row, born in the app, holds the time of the edit applied (the conflict rule)
    [mapped] = reference.mapped()
    assert (mapped["message_id"], mapped["stream_id"], mapped["born_in"]) == (
        str(mid),
        stream_id,
        "app",
    )
    assert mapped["updated_at"] == datetime.fromisoformat(at(5))
    # a late edit finds nothing live to set: the deletion wins
    late = message_event("message.updated", CID, stream_id, reference.ada, "late", updated=9)
    assert reference.apply(late) == "text in step already"
    assert reference.messages() == []


def test_client_edits_of_a_message_born_in_the_app_reordered_leave_the_later(
    reference: App,
) -> None:
    # Given a message of the app's, edited twice by a client, the webhooks reordered
    mid = _app_message(reference, "from the app", T0)
    stream_id = f"msg-{mid}"
    newer = message_event("message.updated", CID, stream_id, reference.ada, "v2", updated=20)
    older = message_event("message.updated", CID, stream_id, reference.ada, "v1", updated=10)
    # When the newer arrives first, then the older
    assert reference.apply(newer) == "text set (born in the app)"
    before = reference.snapshot()
    assert reference.apply(older) == "edit ignored: a later edit was applied"
    # Then the database keeps the newer text, as Stream does, and nothing was written
    assert reference.live_texts() == ["v2"]
    assert reference.snapshot() == before
    assert reference.apply(newer) == "edit ignored: a later edit was applied"  # a retry


def test_an_edit_of_the_apps_on_its_way_to_stream_wins_over_an_older_client_edit(
    reference: App,
) -> None:
    # Given a message of the app's that the app has just edited (its outbox row pending)
    mid = _app_message(reference, "from the app", T0)
    stream_id = f"msg-{mid}"
    with reference.engine.begin() as conn:
        conn.execute(
            text("UPDATE messages SET content = 'the app''s edit' WHERE id = :id"), {"id": mid}
        )
        write_changes(conn, [Change(Target("message", str(mid)), "update", {})])
    # When a client's edit made before it arrives (T0 + 5 s: long before the app's row)
    older = message_event("message.updated", CID, stream_id, reference.ada, "client", updated=5)
    before = reference.snapshot()
    outcome = reference.apply(older)
    # Then it loses: the app's edit, once sent, is the later one in Stream too
    assert outcome == "edit ignored: a later edit of the app's is on its way to Stream"
    assert reference.snapshot() == before
    # A client's edit made after the app's wins
    later = message_event("message.updated", CID, stream_id, reference.ada, "client, later")
    later["message"]["updated_at"] = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert reference.apply(later) == "text set (born in the app)"
    assert reference.live_texts() == ["client, later"]
    # With the app's row settled, the time of the later edit applied decides
    with reference.engine.begin() as conn:
        conn.execute(outbox.update().values(status="done"))
    assert reference.apply(older) == "edit ignored: a later edit was applied"


def test_a_restore_of_the_apps_on_its_way_wins_over_an_older_deletion(reference: App) -> None:
    mid = _app_message(reference, "restored", T0)
    with reference.engine.begin() as conn:
        write_changes(conn, [Change(Target("message", str(mid)), "restore", {})])
    gone = message_event("message.deleted", CID, f"msg-{mid}", reference.ada, deleted=5)
    gone.pop("request_info")
    gone["sync"] = True  # found in Stream's state: the mirror's own deletion, before it
    assert reference.apply(gone) == (
        "deletion ignored: the app's later restore is on its way to Stream"
    )
    assert reference.live_texts() == ["restored"]


def test_events_found_by_sync_of_the_apps_messages_apply_where_stream_differs(
    reference: App,
) -> None:
    """``inbound sync`` cannot tell who called: a message of the app's is no echo then,
    and only a difference from the database writes."""
    edited, deleted, same = (_app_message(reference, t, T0) for t in ("a", "b", "c"))

    def found(kind: str, mid: uuid.UUID, text_: str, **times: float) -> dict[str, Any]:
        event = message_event(kind, CID, f"msg-{mid}", reference.ada, text_, **times)
        event.pop("request_info")
        return event | {"sync": True}

    # The mirror's own sends, as Stream holds them: in step, nothing written
    before = reference.snapshot()
    for event in (
        found("message.new", same, "c"),
        found("message.updated", same, "c", updated=3),
        found("message.new", edited, "a"),
    ):
        outcome = reference.apply(event)
        assert not outcome.startswith("own echo"), outcome
    assert reference.snapshot() == before
    # A client's edit and deletion whose webhooks were lost
    assert reference.apply(found("message.updated", edited, "a, edited", updated=5)) == (
        "text set (born in the app)"
    )
    gone = found("message.deleted", deleted, "b", deleted=6)
    assert reference.apply(gone) == "deleted (born in the app)"
    assert sorted(reference.live_texts()) == ["a, edited", "c"]
    # Found again (the next sync): nothing more
    before = reference.snapshot()
    assert reference.apply(gone) == "deleted already"
    assert reference.apply(found("message.updated", edited, "a, edited", updated=5)) == (
        "edit ignored: a later edit was applied"
    )
    assert reference.snapshot() == before


def _app_message(app: App, content: str, created: datetime) -> uuid.UUID:
    """A message the app wrote itself (born in the app: Stream has it as ``msg-{id}``)."""
    mid = uuid.uuid4()
    with app.engine.begin() as conn:
        conn.execute(
            insert(Message).values(
                id=mid,
                conversation_id=uuid.UUID(app.conversation),
                sender_id=uuid.UUID(app.ada),
                content=content,
                created_at=created,
            )
        )
    return mid


# -- message.read ---------------------------------------------------------------------------


def test_a_read_moves_the_participants_last_read_forward_only(reference: App) -> None:
    def last_read() -> datetime | None:
        query = select(ConversationParticipant.last_read_at).where(
            ConversationParticipant.user_id == uuid.UUID(reference.bob)
        )
        with reference.engine.connect() as conn:
            found: datetime | None = conn.scalar(query)
        return found

    assert reference.apply(read_event(CID, reference.bob, 60)) == "read moved forward"
    assert last_read() == datetime.fromisoformat(at(60))
    before = reference.snapshot()
    assert reference.apply(read_event(CID, reference.bob, 30)) == "read at or past it already"
    assert reference.apply(read_event(CID, reference.bob, 60)) == "read at or past it already"
    assert reference.snapshot() == before
    assert last_read() == datetime.fromisoformat(at(60))


def test_a_read_up_to_a_message_the_apps_read_time_passed_writes_nothing(
    reference: App,
) -> None:
    # The app's read time is past the message (the app marked it read; the mirror's mark
    # read up to it comes back, even without Stream saying who called)
    read_me = _app_message(reference, "read me", T0)
    reference.apply(read_event(CID, reference.bob, 10))
    before = reference.snapshot()
    echo = read_event(CID, reference.bob, 20, client=None, up_to=f"msg-{read_me}")
    assert reference.apply(echo) == "read at or past it already"
    assert reference.snapshot() == before
    # A read up to a message after the app's read time moves it
    later = _app_message(reference, "new", datetime.fromisoformat(at(15)))
    read = read_event(CID, reference.bob, 20, client=None, up_to=f"msg-{later}")
    assert reference.apply(read) == "read moved forward"


def test_an_app_without_read_state_ignores_reads(shaped: App) -> None:
    outcome = shaped.apply(read_event(CID, shaped.bob, 60))
    assert outcome == "the app keeps no read state: ignored" and outcome.ignored  # type: ignore[attr-defined]


# -- members and channels ----------------------------------------------------------------


def test_a_member_change_made_in_stream_is_undone_through_an_outbox_row(app: App) -> None:
    stranger = channel_event("member.added", CID, app.ada, member_id="mallory")
    outcome = app.apply(stranger)
    assert outcome.startswith("member.added made in Stream: undone")
    assert app.outbox_rows() == [("conversation", app.conversation, "reconcile")]
    removed = channel_event("member.removed", CID, app.ada, member_id=app.bob)
    app.apply(removed)
    app.apply(channel_event("channel.updated", CID, app.ada))
    assert len(app.outbox_rows()) == 3
    # A change that leaves the channel as the database has it writes nothing
    before = app.snapshot()
    assert app.apply(channel_event("member.added", CID, app.ada, member_id=app.bob)) == (
        "channel in step with the database already"
    )
    in_step = channel_event("channel.updated", CID, app.ada)
    in_step["channel"] = {"cid": CID, "conversation_id": app.conversation}  # the app's data
    assert app.apply(in_step) == "channel in step with the database already"
    assert app.snapshot() == before


def test_a_channel_the_app_does_not_know_is_reported_not_created(app: App) -> None:
    before = app.snapshot()
    for event in (
        message_event("message.new", "messaging:made-in-a-client", "c-9", app.ada),
        channel_event("member.added", "messaging:made-in-a-client", app.ada, member_id=app.bob),
    ):
        outcome = app.apply(event)
        assert outcome == "unknown channel messaging:made-in-a-client: reported"
        assert outcome.ignored  # type: ignore[attr-defined]
    assert app.snapshot() == before


# -- no echo -----------------------------------------------------------------------------------


def test_the_mirrors_own_calls_coming_back_write_nothing(app: App) -> None:
    app.apply(message_event("message.new", CID, "c-1", app.ada, "from a client"))
    echoes = [
        # the mirror's sends, edits and deletions of the app's messages (msg-…, msgN-…)
        message_event("message.new", CID, "msg-123", app.ada, client=None),
        message_event("message.new", CID, "msg2-123", app.ada, client=False),
        message_event("message.updated", CID, "msg-123", app.ada, "x", updated=3, client=None),
        message_event("message.deleted", CID, "msg-123", app.ada, deleted=4, client=None),
        # the system user's messages
        message_event("message.new", CID, "sys-1", "stream-outbox-system", client=None),
        # the mirror's server-side calls: a read, members, the channel, a Stream-born edit
        read_event(CID, app.bob, 99, client=False),
        channel_event("member.added", CID, app.ada, member_id="mallory", client=False),
        channel_event("member.removed", CID, app.ada, member_id=app.bob, client=False),
        channel_event("channel.updated", CID, app.ada, client=False),
        message_event("message.updated", CID, "c-1", app.ada, "x", updated=50, client=False),
    ]
    before = app.snapshot()
    for event in echoes:
        outcome = app.apply(event)
        assert outcome == "own echo: ignored", event
        assert outcome.ignored  # type: ignore[attr-defined]
    assert app.snapshot() == before


def test_an_inbound_write_leaves_no_outbox_row_under_capture_triggers(reference: App) -> None:
    with capture_triggers(reference.engine):
        reference.apply(message_event("message.new", CID, "c-1", reference.ada, "a", created=1))
        reference.apply(message_event("message.new", CID, "c-2", reference.bob, "b", created=2))
        edit = message_event("message.updated", CID, "c-1", reference.ada, "a2", updated=3)
        reference.apply(edit)
        reference.apply(message_event("message.deleted", CID, "c-2", reference.bob, deleted=4))
        reference.apply(read_event(CID, reference.ada, 5))
        assert reference.live_texts() == ["a2"]
        assert reference.outbox_rows() == []
        # the triggers are there: the app's own write is captured
        with reference.engine.begin() as conn:
            conn.execute(text("UPDATE messages SET content = 'by the app' WHERE content = 'a2'"))
        assert [kind for kind, _, _ in reference.outbox_rows()] == ["message"]


# -- refused ---------------------------------------------------------------------------------


def test_events_that_can_never_apply_are_refused_with_one_line(app: App) -> None:
    with pytest.raises(BadEvent, match="without a type"):
        app.apply({"cid": CID})
    with pytest.raises(BadEvent, match=r"message\.new without a message id"):
        app.apply({"type": "message.new", "cid": CID, "message": {"text": "x"}})
    with pytest.raises(BadEvent, match="not a time"):
        app.apply(message_event("message.new", CID, "c-1", app.ada) | {"created_at": "soon"})
    unknown = message_event("message.new", CID, "c-1", "999999")
    with pytest.raises(UnknownUser, match="user '999999' is not a user of the app"):
        app.apply(unknown)
    assert isinstance(UnknownUser(), PermanentError)
    assert app.messages() == [] and app.mapped() == []


def test_an_event_type_the_app_does_not_apply_is_acknowledged_and_ignored(app: App) -> None:
    outcome = app.apply({"type": "reaction.new", "cid": CID, "created_at": at(1)})
    assert outcome == "reaction.new: not an event the app applies"
    assert outcome.ignored  # type: ignore[attr-defined]
