"""The reference chat app (examples/chat_app) over real PostgreSQL: the demo user's sign-in,
the legacy endpoints (a POST writes its outbox row), the chat router with the emulator's
base URL, the page, and the seeded story through the relay and a worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select

from examples.chat_app import create_app
from examples.chat_app.page import NOT_BUILT
from examples.chat_app.seed import OLD_MESSAGES, Cast, seed
from stream_outbox.app_hooks.outbox import outbox
from stream_outbox.app_hooks.reference import Message, User
from tests.support.pipeline import Pipeline
from tests.support.settings import API_KEY, API_SECRET

STREAM_URL = "http://127.0.0.1:8765"


@pytest.fixture()
def page(tmp_path: Path) -> Path:
    """A built page: its index and one asset."""
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<div id=root></div>")
    (tmp_path / "assets" / "index.js").write_text("console.log('chat')")
    return tmp_path


@pytest.fixture()
def app(database_url: str, clean_db: Engine, page: Path) -> Iterator[TestClient]:
    with TestClient(create_app(database_url, API_KEY, API_SECRET, STREAM_URL, page)) as client:
        yield client


@pytest.fixture()
def cast(clean_db: Engine) -> Cast:
    return seed(clean_db)


def as_user(user_id: uuid.UUID) -> dict[str, str]:
    return {"X-Demo-User": str(user_id)}


def test_token_names_the_signed_in_user_and_the_stream_url_to_use(
    app: TestClient, cast: Cast
) -> None:
    answer = app.get("/chat/token", headers=as_user(cast.guest))
    assert answer.status_code == 200
    body = answer.json()
    assert (body["user_id"], body["api_key"], body["base_url"]) == (
        str(cast.guest),
        API_KEY,
        STREAM_URL,
    )
    assert jwt.decode(body["token"], API_SECRET, algorithms=["HS256"])["user_id"] == str(cast.guest)


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        (None, "sign in: X-Demo-User is missing or not a user id"),
        ("olga", "sign in: X-Demo-User is missing or not a user id"),
        ("00000000-0000-0000-0000-000000000001", "no user 00000000-0000-0000-0000-000000000001"),
    ],
)
def test_a_request_without_a_known_demo_user_is_refused_in_one_line(
    app: TestClient, cast: Cast, header: str | None, detail: str
) -> None:
    headers = {} if header is None else {"X-Demo-User": header}
    for path in ("/chat/token", f"/chat/conversations/{cast.legacy}/messages"):
        answer = app.get(path, headers=headers)
        assert (answer.status_code, answer.json()) == (401, {"detail": detail})


def test_legacy_messages_oldest_first_with_their_sender_to_participants_only(
    app: TestClient, cast: Cast, clean_db: Engine
) -> None:
    url = f"/chat/conversations/{cast.legacy}/messages"
    answer = app.get(url, headers=as_user(cast.guest))
    assert answer.status_code == 200
    messages = answer.json()
    assert [m["content"] for m in messages] == list(OLD_MESSAGES)
    assert [m["sender_name"] for m in messages] == ["Olga Organizer", "Gus Guest", "Olga Organizer"]
    assert messages[0]["sender_id"] == str(cast.organizer)
    assert messages[0]["created_at"] < messages[1]["created_at"]
    # Not to anyone else, and a clear answer for a conversation that does not exist
    stranger = uuid.uuid4()
    with clean_db.begin() as conn:
        conn.execute(insert(User).values(id=stranger, email="stranger@example.com"))
    refused = app.get(url, headers=as_user(stranger))
    assert (refused.status_code, refused.json()["detail"]) == (
        403,
        "not a participant of this conversation",
    )
    missing = uuid.uuid4()
    unknown = app.get(f"/chat/conversations/{missing}/messages", headers=as_user(cast.guest))
    assert (unknown.status_code, unknown.json()["detail"]) == (404, f"no conversation {missing}")


def test_a_legacy_post_stores_the_message_and_its_outbox_row_in_one_transaction(
    app: TestClient, cast: Cast, clean_db: Engine
) -> None:
    url = f"/chat/conversations/{cast.conversation}/messages"
    with clean_db.connect() as conn:
        before = set(conn.scalars(select(outbox.c.id)))
    answer = app.post(url, json={"content": "See you there"}, headers=as_user(cast.guest))
    assert answer.status_code == 200
    body = answer.json()
    assert (body["content"], body["sender_id"], body["sender_name"]) == (
        "See you there",
        str(cast.guest),
        "Gus Guest",
    )
    with clean_db.connect() as conn:
        stored = conn.execute(select(Message).where(Message.id == uuid.UUID(body["id"]))).one()
        rows = conn.execute(select(outbox).where(outbox.c.id.not_in(before))).all()
    assert stored.created_at.isoformat() == body["created_at"].replace("Z", "+00:00")
    assert [(r.target_kind, r.target_id, r.status) for r in rows] == [
        ("message", body["id"], "pending")
    ]
    # It is the last the old page sees
    listed = app.get(url, headers=as_user(cast.organizer)).json()
    assert listed[-1]["id"] == body["id"]


def test_a_legacy_post_of_nothing_or_to_a_strangers_conversation_writes_nothing(
    app: TestClient, cast: Cast, clean_db: Engine
) -> None:
    url = f"/chat/conversations/{cast.legacy}/messages"
    empty = app.post(url, json={"content": "  "}, headers=as_user(cast.guest))
    assert (empty.status_code, empty.json()) == (422, {"detail": "content is empty"})
    assert app.post(url, json={}, headers=as_user(cast.guest)).status_code == 422
    missing = app.post(
        f"/chat/conversations/{uuid.uuid4()}/messages",
        json={"content": "hello?"},
        headers=as_user(cast.guest),
    )
    assert missing.status_code == 404
    with clean_db.connect() as conn:
        assert conn.scalar(select(Message.id).where(Message.content.in_(["  ", "hello?"]))) is None
        written = set(conn.scalars(select(outbox.c.target_id)))
    assert written == {str(cast.conversation)}  # the seeded conversation's rows only


def test_the_page_is_served_at_the_root(app: TestClient) -> None:
    index = app.get("/?user=a&conversation=b")
    assert (index.status_code, index.text) == (200, "<div id=root></div>")
    assert app.get("/assets/index.js").text == "console.log('chat')"


def test_a_page_not_built_says_how_to_build_it(
    database_url: str, clean_db: Engine, tmp_path: Path
) -> None:
    app = create_app(database_url, API_KEY, API_SECRET, STREAM_URL, tmp_path / "dist")
    with TestClient(app) as client:
        answer = client.get("/")
        assert (answer.status_code, answer.text) == (503, NOT_BUILT)
        assert client.get("/health").json() == {"status": "ok"}


def test_the_seeded_conversation_syncs_and_the_legacy_one_migrates_on_demand_with_its_history(
    pipeline: Pipeline, database_url: str, page: Path
) -> None:
    cast = seed(pipeline.engine)
    app = create_app(database_url, API_KEY, API_SECRET, pipeline.emu.base_url, page)
    with TestClient(app) as client:
        pipeline.drain()

        def lookup(conversation: uuid.UUID) -> dict[str, object]:
            url = f"/chat/conversations/{conversation}/channel"
            answer: dict[str, object] = client.get(url, headers=as_user(cast.guest)).json()
            return answer

        assert lookup(cast.conversation)["synced"] is True
        assert lookup(cast.legacy)["synced"] is False
        migrate = f"/chat/conversations/{cast.legacy}/migrate"
        asked = client.post(migrate, headers=as_user(cast.guest))
        assert (asked.status_code, asked.json()["status"]) == (202, "pending")
        assert asked.json()["cid"] == f"messaging:legacy_{cast.legacy}"
        pipeline.drain()
        done = client.get(migrate, headers=as_user(cast.guest))
        assert (done.status_code, done.json()["synced"]) == (200, True)
    held = pipeline.emu.state()["messages"][f"messaging:legacy_{cast.legacy}"]
    assert [m["text"] for m in held] == list(OLD_MESSAGES)
