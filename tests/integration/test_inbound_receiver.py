"""The webhook receiver over HTTP (uvicorn) on real PostgreSQL: Stream's signature, key
and body limit checked before anything is written; each X-Webhook-Id stored once."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client import REGISTRY
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from stream_outbox.app_hooks.outbox import inbox
from stream_outbox.worker.inbound import WEBHOOK_PATH, create_receiver, signature_valid
from stream_outbox.worker.inbound.receiver import Receiver
from stream_outbox.worker.settings import Settings
from tests.support.inbound import message_event, post_event, serve_app, sign
from tests.support.settings import API_SECRET

MAX_BODY = 4096


@pytest.fixture()
def wakes() -> threading.Event:
    return threading.Event()


@pytest.fixture()
def url(settings: Settings, clean_db: Engine, wakes: threading.Event) -> Iterator[str]:
    """The receiver's webhook URL, with a small body limit."""
    small = settings.model_copy(update={"inbound_max_body": MAX_BODY})
    with serve_app(create_receiver(small, clean_db, on_stored=wakes.set)) as base:
        yield base + WEBHOOK_PATH


@pytest.fixture()
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(inbox).order_by(inbox.c.id)).mappings()]


def counted(outcome: str) -> float:
    value = REGISTRY.get_sample_value("stream_outbox_inbound_webhooks_total", {"outcome": outcome})
    return value or 0.0


def test_a_signed_event_is_stored_pending_and_wakes_the_runner(
    url: str, http: requests.Session, clean_db: Engine, wakes: threading.Event
) -> None:
    # Given a message.new as Stream sends it
    event = message_event("messaging:c1", "m-1", user_id="u7")
    # When it is posted signed
    answer = post_event(http, url, event, webhook_id="w-1")
    # Then it is acknowledged, stored pending with its columns, and the runner woken
    assert answer.status_code == 200, answer.text
    [row] = rows(clean_db)
    assert (row["webhook_id"], row["event_type"]) == ("w-1", "message.new")
    assert row["status"] == "pending"
    assert (row["cid"], row["message_id"], row["user_id"]) == ("messaging:c1", "m-1", "u7")
    assert row["event_at"] is not None and row["payload"] == event
    assert wakes.is_set()


@pytest.mark.parametrize("signature", [None, "", "0" * 64, "forged"])
def test_a_missing_or_forged_signature_gets_401_and_writes_nothing(
    url: str, http: requests.Session, clean_db: Engine, signature: str | None
) -> None:
    before = counted("bad_signature")
    answer = post_event(
        http, url, message_event(), secret=None, signature=signature if signature else None
    )
    assert answer.status_code == 401
    assert answer.json() == {"error": "X-Signature is missing or wrong"}
    assert rows(clean_db) == []
    assert counted("bad_signature") == before + 1


def test_a_signature_of_another_body_or_secret_gets_401(
    url: str, http: requests.Session, clean_db: Engine
) -> None:
    event = message_event()
    other = json.dumps({**event, "type": "message.deleted"}).encode()
    assert post_event(http, url, event, signature=sign(other)).status_code == 401
    wrong_secret = "another-secret-that-is-32-bytes-long!!"
    assert post_event(http, url, event, secret=wrong_secret).status_code == 401
    assert rows(clean_db) == []


def test_a_wrong_api_key_is_refused(url: str, http: requests.Session, clean_db: Engine) -> None:
    answer = post_event(http, url, message_event(), key="someone-elses-key")
    assert answer.status_code == 401
    assert answer.json() == {"error": "X-Api-Key is not this app's key"}
    assert rows(clean_db) == []


def test_a_replayed_webhook_id_is_stored_once(
    url: str, http: requests.Session, clean_db: Engine
) -> None:
    # Given an event delivered, then retried by Stream with the same X-Webhook-Id
    before = counted("duplicate")
    event = message_event()
    first = post_event(http, url, event, webhook_id="w-again")
    again = post_event(http, url, event, webhook_id="w-again")
    # Then both are acknowledged (Stream stops retrying) and one row is stored
    assert (first.status_code, again.status_code) == (200, 200)
    assert (first.json()["outcome"], again.json()["outcome"]) == ("stored", "duplicate")
    assert len(rows(clean_db)) == 1
    assert counted("duplicate") == before + 1


def test_a_webhook_without_an_id_is_stored_once_per_body(
    url: str, http: requests.Session, clean_db: Engine
) -> None:
    # Given a sender that names no X-Webhook-Id, posting one event twice, then another
    event, other = message_event(text="once"), message_event(text="another")
    answers = [post_event(http, url, e, with_id=False) for e in (event, event, other)]
    # Then the same body is stored once, under its SHA-256; another body is another event
    assert [a.json()["outcome"] for a in answers] == ["stored", "duplicate", "stored"]
    stored = [row["webhook_id"] for row in rows(clean_db)]
    body = json.dumps(event).encode()
    assert stored[0] == f"sha256:{hashlib.sha256(body).hexdigest()}"
    assert len(stored) == 2 and stored[1].startswith("sha256:") and stored[1] != stored[0]


def test_an_oversized_body_gets_413_and_writes_nothing(
    url: str, http: requests.Session, clean_db: Engine
) -> None:
    big = message_event(text="x" * MAX_BODY)
    # declared by Content-Length: refused before the body is read
    assert post_event(http, url, big).status_code == 413
    # streamed without a length (chunked): refused once the limit is passed
    body = json.dumps(big).encode()
    chunks = (body[i : i + 1000] for i in range(0, len(body), 1000))
    headers = {"X-Api-Key": "test-key", "X-Signature": sign(body), "X-Webhook-Id": "w-big"}
    answer = http.post(url, data=chunks, headers=headers, timeout=10)
    assert answer.status_code == 413
    assert rows(clean_db) == []


def test_an_unknown_event_type_is_acknowledged_counted_and_kept_as_ignored(
    url: str, http: requests.Session, clean_db: Engine, wakes: threading.Event
) -> None:
    before = counted("unknown_type")
    event = {**message_event(), "type": "reaction.new"}
    answer = post_event(http, url, event)
    assert answer.status_code == 200 and answer.json()["outcome"] == "unknown_type"
    [row] = rows(clean_db)
    assert row["status"] == "ignored" and row["settled_at"] is not None
    assert row["last_error"] == (
        "not applied: event type 'reaction.new' is not one the inbound side takes"
    )
    assert counted("unknown_type") == before + 1
    assert not wakes.is_set()  # nothing for the runner


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"no": "type"}'])
def test_a_signed_body_that_is_not_an_event_gets_400(
    url: str, http: requests.Session, clean_db: Engine, body: bytes
) -> None:
    answer = post_event(http, url, body)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("not a Stream event: ")
    assert rows(clean_db) == []


def test_only_post_is_served(url: str, http: requests.Session) -> None:
    assert http.get(url, timeout=5).status_code == 405


def test_the_secret_is_never_in_answers_or_logs(
    url: str, http: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        answers = [
            post_event(http, url, message_event(), secret="wrong-secret-wrong-secret-wrong!"),
            post_event(http, url, message_event(), key="other"),
            post_event(http, url, message_event()),
        ]
    assert all(API_SECRET not in a.text for a in answers)
    assert API_SECRET not in caplog.text


def test_signature_valid_compares_the_hex_digest() -> None:
    body = b'{"type":"message.new"}'
    assert signature_valid(API_SECRET.encode(), body, sign(body))
    assert signature_valid(API_SECRET.encode(), body, sign(body).upper())
    assert not signature_valid(API_SECRET.encode(), body, None)
    assert not signature_valid(API_SECRET.encode(), body + b" ", sign(body))


def test_concurrent_posts_are_stored_together_each_webhook_id_once(
    url: str, clean_db: Engine
) -> None:
    # Given 40 posts at once: 20 webhooks, each delivered twice (Stream's retries racing)
    events = [(f"w-{n}", message_event(f"messaging:c{n % 3}", f"m-{n}")) for n in range(20)]
    answers: list[str] = []

    def deliver(webhook_id: str, event: dict[str, Any]) -> None:
        with requests.Session() as session:
            answers.append(post_event(session, url, event, webhook_id=webhook_id).json()["outcome"])

    threads = [threading.Thread(target=deliver, args=pair) for pair in events * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then each was acknowledged, stored once, and the other delivery said duplicate
    assert sorted(answers) == ["duplicate"] * 20 + ["stored"] * 20
    assert sorted(row["webhook_id"] for row in rows(clean_db)) == sorted(w for w, _ in events)


def test_a_store_that_fails_answers_503_without_its_reason(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a receiver whose inbox is unreachable (the database down)
    async def down(event: object) -> bool:
        raise OperationalError("INSERT", {}, Exception(f"password {API_SECRET} refused"))

    receiver = Receiver(down, "test-key", API_SECRET.encode(), MAX_BODY)
    app = Starlette(routes=[Route(WEBHOOK_PATH, receiver.webhook, methods=["POST"])])
    with serve_app(app) as base, requests.Session() as session:
        answer = post_event(session, base + WEBHOOK_PATH, message_event())
    # Then Stream hears 503 (it retries), and neither answer nor log carries the reason
    assert answer.status_code == 503
    assert answer.json() == {"error": "the inbox is unavailable: try again"}
    assert API_SECRET not in caplog.text and "password" not in caplog.text


def test_the_receiver_mounted_in_the_apps_own_asgi_app(
    settings: Settings, clean_db: Engine
) -> None:
    # Given the app's own ASGI app with the receiver mounted under /hooks
    app = Starlette(routes=[Mount("/hooks", create_receiver(settings, clean_db))])
    with serve_app(app) as base, requests.Session() as session:
        # When Stream posts to /hooks/stream/webhook
        answer = post_event(session, f"{base}/hooks{WEBHOOK_PATH}", message_event())
    # Then the event is stored
    assert answer.status_code == 200 and len(rows(clean_db)) == 1
