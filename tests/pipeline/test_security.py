"""Security after a run with failures: the secret stays secret, the dashboard stays shut.

Covered elsewhere and not repeated here: the dashboard's sign-in, wrong credentials, CSRF
tokens and cross-site posts on a row's replay, and secrets in its pages and its command's
output (``tests/integration/test_dashboard.py``); the CLI's error filter against SQL
injection (``tests/admin/test_admin_cli.py::test_error_filter_cannot_inject_sql``); the
emulator's 401 code 43 for a token signed with the wrong secret
(``tests/emulator/test_emulator_auth.py``). This module adds, on a pipeline run with
failures of every kind: a scan of everything the product writes or shows for the API
secret and the server token made from it; the bulk replay refused without credentials
and from another site; the dashboard's query parameters against SQL injection; and the
gateway's answer to a wrong secret (a permanent error, the rows failed at once).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from prometheus_client import generate_latest
from pydantic import SecretStr
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from stream_outbox.app_hooks import outbox
from stream_outbox.app_hooks.outbox import audit
from stream_outbox.app_hooks.reference import Message, User
from stream_outbox.emulator import Emulator
from stream_outbox.worker import runtime
from stream_outbox.worker.dashboard import create_app
from stream_outbox.worker.dashboard.pages import FILTER_FIELDS
from stream_outbox.worker.errors import StreamError
from stream_outbox.worker.operations.replay import replay
from stream_outbox.worker.settings import Settings
from tests.support.cli import invoke
from tests.support.pipeline import Pipeline
from tests.support.settings import API_SECRET
from tests.support.story import invite

ORIGIN = "http://dash.test"
AUTH = ("ops", "pw-for-the-security-test")
TOKEN = jwt.encode({"server": True}, API_SECRET, algorithm="HS256")  # what the SDK sends
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@pytest.fixture()
def failed_run(
    pipeline: Pipeline, session_factory: Callable[[], Session], caplog: pytest.LogCaptureFixture
) -> dict[str, Any]:
    """A run with failures of every kind: permanent, exhausted retries, dropped, then OK."""
    caplog.set_level(logging.DEBUG)
    emu = pipeline.emu
    emu.inject_failure("UpdateUsers", status=503, times=2)
    emu.inject_failure("GetOrCreateChannel", status=400, times=5, code=4, message="bad data")
    emu.drop_connections("SendMessage", times=1)
    emu.inject_failure("DeactivateUsers", status=500, times=50)
    with session_factory() as session, session.begin():
        made = invite(session)
        session.add(Message(conversation_id=made["conversation"].id, content="hello"))
        leaver = User(email="leaver@example.com")
        session.add(leaver)
    pipeline.drain()
    with session_factory() as session, session.begin():
        session.delete(session.get(User, leaver.id))
    pipeline.drain()
    rows = pipeline.rows()
    failed = [row for row in rows if row["status"] == "failed"]
    assert {row["target_kind"] for row in failed} >= {"conversation", "user"}
    assert any(row["last_error"].startswith("after ") for row in failed)  # retries ran out
    return {"made": made, "failed": failed}


@pytest.fixture()
def dashboard(pipeline: Pipeline) -> Iterator[TestClient]:
    settings = pipeline.settings.model_copy(
        update={"dashboard_user": AUTH[0], "dashboard_password": SecretStr(AUTH[1])}
    )
    with TestClient(create_app(settings, engine=pipeline.engine), base_url=ORIGIN) as client:
        yield client


def test_the_secret_and_its_token_never_leave_the_worker(
    pipeline: Pipeline,
    failed_run: dict[str, Any],
    dashboard: TestClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = [caplog.text, repr(pipeline.rows()), generate_latest().decode()]
    rt = runtime.current()
    seen += [repr(rt), repr(rt.settings), repr(rt.gateway), str(rt.settings.model_dump())]
    try:  # an error as the gateway raises it
        rt.gateway.add_members("messaging", "no-such-channel", ["nobody"])
    except StreamError as exc:
        seen += [str(exc), repr(exc), exc.describe()]
    ids = [row["id"] for row in failed_run["failed"]]
    replay(pipeline.engine, actor="security-test", ids=ids)
    with pipeline.engine.connect() as conn:
        seen.append(repr(conn.execute(select(audit)).all()))
    pages = ["/", "/rows", "/rows?status=failed", "/replay?status=failed", "/rows/999999"]
    pages += [f"/rows/{row_id}" for row_id in ids]
    for path in pages:
        response = dashboard.get(path, auth=AUTH)
        seen.append(response.text + str(response.headers))
    for env, value in {
        "DATABASE_URL": pipeline.settings.database_url,
        "GETSTREAM_API_KEY": pipeline.settings.getstream_api_key or "",
        "GETSTREAM_API_SECRET": API_SECRET,
        "STREAM_CHAT_URL": pipeline.emu.base_url,
    }.items():
        monkeypatch.setenv(env, value)
    for row_id in ids:
        shown = invoke("admin", "show", str(row_id), "--json")
        seen.append(shown.output)
    everything = "\n".join(seen)
    assert "bad data" in everything and "after 5 attempts" in everything  # the scan saw them
    assert API_SECRET not in everything
    assert TOKEN not in everything


def test_bulk_replay_is_refused_without_credentials_and_from_another_site(
    pipeline: Pipeline, failed_run: dict[str, Any], dashboard: TestClient
) -> None:
    form = {"status": "failed"}
    assert dashboard.post("/replay", data=form, headers={"Origin": ORIGIN}).status_code == 401
    page = dashboard.get("/replay?status=failed", auth=AUTH)
    token = CSRF.findall(page.text)[0]
    foreign = dashboard.post(
        "/replay",
        data={**form, "csrf": token},
        headers={"Origin": "http://evil.test"},
        auth=AUTH,
    )
    assert foreign.status_code == 403
    statuses = {row["status"] for row in pipeline.rows() if row["id"] in _ids(failed_run)}
    assert statuses == {"failed"}
    with pipeline.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(audit)) == 0


def _ids(failed_run: dict[str, Any]) -> set[int]:
    return {row["id"] for row in failed_run["failed"]}


INJECTIONS = [
    ("error", "x' OR '1'='1", 200),
    ("error", "%' ; DROP TABLE stream_outbox; --", 200),
    ("target_id", "' OR 1=1 --", 200),
    ("target_id", "1' UNION SELECT id, payload FROM stream_outbox --", 200),
    ("status", "failed' OR 1=1 --", 400),
    ("kind", "user' OR 'a'='a", 400),
    ("since", "1h'; DELETE FROM stream_outbox; --", 400),
    ("until", "2026-01-01' OR 1=1", 400),
    ("page", "1 OR 1=1", 400),
    ("limit", "10; DROP TABLE stream_outbox", 400),
]


@pytest.fixture()
def rows_dashboard(clean_db: Engine, emu: Emulator, database_url: str) -> Iterator[TestClient]:
    """The dashboard over a few rows written directly: failed, done and pending ones."""
    kinds = [
        ("failed", "user"),
        ("failed", "conversation"),
        ("done", "user"),
        ("pending", "message"),
    ]
    rows = [
        {
            "status": status,
            "target_kind": kind,
            "target_id": str(n),
            "event": "insert",
        }
        for n, (status, kind) in enumerate(kinds)
    ]
    with clean_db.begin() as conn:
        conn.execute(insert(outbox), [{**row, "last_error": "boom"} for row in rows])
    settings = Settings(
        database_url=database_url,
        dashboard_user=AUTH[0],
        dashboard_password=AUTH[1],
        getstream_api_key=emu.api_key,
        getstream_api_secret=emu.api_secret,
        stream_chat_url=emu.base_url,
    )
    with TestClient(create_app(settings, engine=clean_db), base_url=ORIGIN) as client:
        yield client


def _snapshot(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(outbox).order_by(outbox.c.id)))


@pytest.mark.parametrize(("field", "value", "status"), INJECTIONS)
def test_the_dashboards_query_parameters_cannot_inject_sql(
    rows_dashboard: TestClient, clean_db: Engine, field: str, value: str, status: int
) -> None:
    before = _snapshot(clean_db)
    listed = rows_dashboard.get("/rows", params={field: value}, auth=AUTH)
    assert listed.status_code == status
    assert re.findall(r'<tr id="row-(\d+)">', listed.text) == []
    if field in FILTER_FIELDS:  # the bulk replay's confirmation takes the same filters
        confirm = rows_dashboard.get(
            "/replay", params={"status": "failed", field: value}, auth=AUTH
        )
        assert confirm.status_code == status
        assert 'id="confirm"' not in confirm.text  # nothing would be replayed
    assert _snapshot(clean_db) == before
    assert len(listed_all := rows_dashboard.get("/rows", auth=AUTH).text) > 0
    assert len(re.findall(r'<tr id="row-(\d+)">', listed_all)) == 4  # the table is whole


def test_a_wrong_secret_is_a_permanent_error_and_fails_the_rows_at_once(
    pipeline: Pipeline, session_factory: Callable[[], Session]
) -> None:
    wrong = "a-wrong-secret-that-is-also-32-bytes-or-more"
    previous = runtime.current()
    settings: Settings = previous.settings.model_copy(
        update={"getstream_api_secret": SecretStr(wrong)}
    )
    own = runtime.Runtime.from_settings(settings)
    runtime.install(own)
    try:
        with session_factory() as session, session.begin():
            invite(session)
        pipeline.drain()
    finally:
        runtime.install(previous)
        own.engine.dispose()
        own.redis.close()
    rows = pipeline.rows()
    assert {row["status"] for row in rows} == {"failed"}
    assert all(row["attempts"] == 1 for row in rows)  # no retry: a permanent error
    assert all("HTTP 401 code 43" in row["last_error"] for row in rows), rows
    assert not any(wrong in row["last_error"] for row in rows)
    assert pipeline.emu.state()["users"] == {}
    with pipeline.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(outbox)) == len(rows)
