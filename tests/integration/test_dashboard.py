"""The admin web dashboard over HTTP (Starlette's TestClient) on real PostgreSQL.

Auth (Basic, bearer token, token login), stats, lists and filters, row detail,
replay (single and bulk with its confirmation), CSRF and origin checks, one-line
errors with 4xx statuses, and secrets that never reach a page or a log.
"""

from __future__ import annotations

import base64
import re
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, select, update
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from stream_outbox.app_hooks.outbox import audit, outbox
from stream_outbox.emulator import Emulator
from stream_outbox.worker.dashboard import create_app
from stream_outbox.worker.errors import ConfigurationError
from stream_outbox.worker.operations.replay import replay
from stream_outbox.worker.operations.rows import failure_groups
from stream_outbox.worker.settings import Settings
from tests.support.outbox import add_row
from tests.support.processes import free_port, script, serving, start, stop
from tests.support.settings import clean_environ

USER = "admin"
PASSWORD = "pw-Never-Shown-7c1e9a"
TOKEN = "tok-Never-Shown-0b5d44f2"
STREAM_SECRET = "stream-secret-Never-Shown-000000000000"
HOST = "dash.test"
ORIGIN = f"http://{HOST}"
AUTH = (USER, PASSWORD)
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
ERROR = re.compile(r'<p class="error" role="alert" id="error">([^<]*)</p>')
SECRETS = (PASSWORD, TOKEN, STREAM_SECRET)


@pytest.fixture()
def dashboard_settings(database_url: str, emu: Emulator) -> Settings:
    """Both ways in, and Stream credentials (the emulator) for the target panel."""
    return Settings(
        database_url=database_url,
        dashboard_user=USER,
        dashboard_password=PASSWORD,
        dashboard_token=TOKEN,
        getstream_api_key=emu.api_key,
        getstream_api_secret=emu.api_secret,
        stream_chat_url=emu.base_url,
    )


@pytest.fixture()
def client(clean_db: Engine, dashboard_settings: Settings) -> Iterator[TestClient]:
    """A client of the dashboard on host ``dash.test``, no credentials by default."""
    with TestClient(
        create_app(dashboard_settings, engine=clean_db), base_url=ORIGIN
    ) as test_client:
        yield test_client


def add(engine: Engine, status: str = "failed", **values: Any) -> int:
    """Insert one outbox row (a failed user row by default); its id."""
    row = {"target_id": str(uuid.uuid4()), "event": "updated", "payload": {"changed": ["email"]}}
    return add_row(engine, **{**row, "status": status, **values})


def status_of(engine: Engine, row_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.scalar(select(outbox.c.status).where(outbox.c.id == row_id)))


def audit_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(audit).order_by(audit.c.id))]


def csrf_of(client: TestClient, path: str) -> str:
    page = client.get(path, auth=AUTH)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found, "no CSRF field on the page"
    return found.group(1)


def error_of(response: httpx2.Response) -> str:
    found = ERROR.search(response.text)
    assert found, f"no error line on the page: {response.text[:500]}"
    return found.group(1)


def listed(response: httpx2.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [int(i) for i in re.findall(r'<tr id="row-(\d+)">', response.text)]


# -- authentication -----------------------------------------------------------------


def test_refuses_without_credentials(client: TestClient, clean_db: Engine) -> None:
    row_id = add(clean_db, last_error="GetOrCreateChannel HTTP 400 visible-only-inside")
    for path in ("/", "/rows", f"/rows/{row_id}", "/replay", "/rows?status=failed"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Basic ")
        assert "visible-only-inside" not in response.text
        assert f"row-{row_id}" not in response.text
        assert 'name="csrf"' not in response.text
    refused = client.post(f"/rows/{row_id}/replay", headers={"Origin": ORIGIN})
    assert refused.status_code == 401
    assert status_of(clean_db, row_id) == "failed"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Basic " + base64.b64encode(b"admin:wrong").decode()},
        {"Authorization": "Basic " + base64.b64encode(f"root:{PASSWORD}".encode()).decode()},
        {"Authorization": "Basic " + base64.b64encode(PASSWORD.encode()).decode()},
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {PASSWORD}"},
        {"Cookie": "stream_outbox_dashboard=9999999999.deadbeef"},
        {"Cookie": f"stream_outbox_dashboard={TOKEN}"},
    ],
    ids=["password", "user", "no-colon", "garbage", "token", "password-as-token", "forged", "raw"],
)
def test_refuses_wrong_credentials(client: TestClient, headers: dict[str, str]) -> None:
    response = client.get("/", headers=headers)
    assert response.status_code == 401
    assert "total-failed" not in response.text


def test_bearer_token_and_token_login(client: TestClient) -> None:
    assert client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/login").status_code == 200
    wrong = client.post("/login", data={"token": "nope"}, headers={"Origin": ORIGIN})
    assert wrong.status_code == 401
    assert error_of(wrong) == "wrong token"
    foreign = client.post("/login", data={"token": TOKEN}, headers={"Origin": "http://evil.test"})
    assert foreign.status_code == 403
    login = client.post(
        "/login", data={"token": TOKEN}, headers={"Origin": ORIGIN}, follow_redirects=False
    )
    assert login.status_code == 303
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
    page = client.get("/")
    assert page.status_code == 200 and "signed in as token" in page.text
    token = CSRF.findall(page.text)[0]
    logout = client.post("/logout", data={"csrf": token}, headers={"Origin": ORIGIN})
    assert logout.status_code == 200 and "Sign in" in logout.text
    assert client.get("/").status_code == 401


def test_failed_sign_ins_lock_the_client_out_for_a_while(
    clean_db: Engine, dashboard_settings: Settings
) -> None:
    # Given a dashboard that allows three failed sign-ins a minute
    strict = dashboard_settings.model_copy(update={"dashboard_lockout": "3 per 1 minute"})
    with TestClient(create_app(strict, engine=clean_db), base_url=ORIGIN) as client:
        # When a client fails three times (a wrong password, a wrong token, a wrong form)
        assert client.get("/", auth=(USER, "wrong")).status_code == 401
        assert client.get("/", headers={"Authorization": "Bearer nope"}).status_code == 401
        form = client.post("/login", data={"token": "nope"}, headers={"Origin": ORIGIN})
        assert form.status_code == 401
        # Then even the right credentials get 429 with the wait, and learn nothing else
        locked = client.get("/", auth=AUTH)
        assert locked.status_code == 429
        assert 0 < int(locked.headers["Retry-After"]) <= 60
        assert "total-failed" not in locked.text
        assert error_of(locked) == "too many failed sign-ins: try later"
        login = client.post("/login", data={"token": TOKEN}, headers={"Origin": ORIGIN})
        assert login.status_code == 429
        # And a request without credentials is still just asked for them
        assert client.get("/").status_code == 401


def test_right_credentials_do_not_count_against_the_lockout(
    clean_db: Engine, dashboard_settings: Settings
) -> None:
    strict = dashboard_settings.model_copy(update={"dashboard_lockout": "2 per 1 minute"})
    with TestClient(create_app(strict, engine=clean_db), base_url=ORIGIN) as client:
        for _ in range(5):
            assert client.get("/", auth=AUTH).status_code == 200
        assert client.get("/", auth=(USER, "wrong")).status_code == 401
        assert client.get("/", auth=AUTH).status_code == 200


def test_create_app_refuses_without_credentials(database_url: str) -> None:
    def only(**dashboard: str | None) -> Settings:
        unset = dict.fromkeys(("dashboard_user", "dashboard_password", "dashboard_token"))
        return Settings(database_url=database_url, **{**unset, **dashboard})

    with pytest.raises(ConfigurationError) as none:
        create_app(only())
    message = str(none.value)
    assert message.splitlines() == [message]
    for variable in (
        "OUTBOX_DASHBOARD_USER",
        "OUTBOX_DASHBOARD_PASSWORD",
        "OUTBOX_DASHBOARD_TOKEN",
    ):
        assert variable in message
    with pytest.raises(ConfigurationError, match="OUTBOX_DASHBOARD_PASSWORD is not set"):
        create_app(only(dashboard_user="admin"))
    with pytest.raises(ConfigurationError, match="OUTBOX_DASHBOARD_USER is not set"):
        create_app(only(dashboard_password="x"))
    with pytest.raises(ConfigurationError, match="needs credentials"):
        create_app(only(dashboard_token=""))


def test_safety_headers(client: TestClient) -> None:
    response = client.get("/", auth=AUTH)
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"


# -- pages ---------------------------------------------------------------------------


def test_stats_page(client: TestClient, clean_db: Engine) -> None:
    for _ in range(2):
        add(clean_db, last_error="boom")
    add(clean_db, "pending", target_kind="conversation")
    for _ in range(3):
        add(clean_db, "done", target_kind="message")
    page = client.get("/", auth=AUTH).text
    figures = dict(re.findall(r'id="((?:count|total)-[a-z-]+)">(?:<a [^>]*>)?(\d+)<', page))
    assert figures["count-failed-user"] == "2"
    assert figures["total-failed"] == "2"
    assert figures["count-pending-conversation"] == "1"
    assert figures["count-done-message"] == "3"
    assert figures["total-done"] == "3"
    assert figures["total-dispatched"] == "0"
    assert re.search(r'id="failed-last-hour">2<', page)


def test_list_filters_pagination_newest_first(client: TestClient, clean_db: Engine) -> None:
    old = add(clean_db, created_at=datetime.now(UTC) - timedelta(days=3), last_error="old one")
    user = add(clean_db, last_error="UpdateUsers HTTP 400 code 4: bad name")
    conv = add(clean_db, "pending", target_kind="conversation", target_id="conv-1")
    msg = add(clean_db, "done", target_kind="message")

    def ids(**query: str) -> list[int]:
        return listed(client.get("/rows", params=query, auth=AUTH))

    assert ids() == [msg, conv, user, old]
    assert ids(status="failed") == [user, old]
    assert ids(kind="conversation") == [conv]
    assert ids(target_id="conv-1") == [conv]
    assert ids(error="code 4") == [user]
    assert ids(error="%") == []
    assert ids(since="1d") == [msg, conv, user]
    assert ids(until="2d") == [old]
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="seconds")
    assert ids(since=yesterday, status="failed", kind="user") == [user]
    assert ids(limit="3") == [msg, conv, user]
    second = client.get("/rows", params={"limit": "3", "page": "2"}, auth=AUTH)
    assert listed(second) == [old]
    assert "page 2 of 2" in second.text and 'rel="prev"' in second.text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"since": "yesterday"}, "'yesterday' is not a time: use ISO 8601"),
        ({"until": "2026-13-45"}, "'2026-13-45' is not a time"),
        ({"status": "broken"}, "unknown status 'broken'"),
        ({"kind": "channel"}, "unknown target kind 'channel'"),
        ({"since": "1h", "until": "2d"}, "--since is later than --until"),
        ({"page": "0"}, "page must be at least 1"),
        ({"limit": "many"}, "limit must be a whole number, not 'many'"),
    ],
)
def test_malformed_filter_is_a_one_line_400(
    client: TestClient, clean_db: Engine, query: dict[str, str], expected: str
) -> None:
    row_id = add(clean_db)
    response = client.get("/rows", params=query, auth=AUTH)
    assert response.status_code == 400
    message = error_of(response).replace("&#39;", "'")
    assert message.startswith(expected) and "\n" not in message
    assert f"row-{row_id}" not in response.text


def test_detail_page(client: TestClient, clean_db: Engine) -> None:
    row_id = add(
        clean_db,
        attempts=4,
        payload={"fields": ["email"], "note": "<script>alert(1)</script>"},
        last_error="UpdateUsers HTTP 400 code 4: name too long",
    )
    replay(clean_db, actor="cli:alice", ids=[row_id])
    with clean_db.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == row_id).values(status="failed"))
    page = client.get(f"/rows/{row_id}", auth=AUTH)
    assert page.status_code == 200
    text = page.text
    assert re.search(r'id="status" class="status-failed">failed<', text)
    assert re.search(r'id="attempts">4<', text)
    assert "UpdateUsers HTTP 400 code 4: name too long" in text
    assert "&#34;fields&#34;" in text or "&quot;fields&quot;" in text
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "cli:alice" in text and "replay" in text
    assert re.search(r'id="target-database">absent \(deleted\)<', text)
    assert re.search(r'id="target-stream">absent<', text)
    assert 'id="replay"' in text


def test_unknown_and_malformed_row_ids(client: TestClient) -> None:
    missing = client.get("/rows/424242", auth=AUTH)
    assert missing.status_code == 404
    assert error_of(missing) == "no outbox row with id 424242"
    malformed = client.get("/rows/abc", auth=AUTH)
    assert malformed.status_code == 400
    assert error_of(malformed) == "&#39;abc&#39; is not an outbox row id"
    assert client.get("/nowhere", auth=AUTH).status_code == 404


# -- replay ----------------------------------------------------------------------------


def test_replay_of_a_failed_row(client: TestClient, clean_db: Engine) -> None:
    row_id = add(clean_db, last_error="timeout")
    token = csrf_of(client, f"/rows/{row_id}")
    response = client.post(
        f"/rows/{row_id}/replay",
        data={"csrf": token},
        headers={"Origin": ORIGIN},
        auth=AUTH,
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/rows/{row_id}?replayed=1"
    assert status_of(clean_db, row_id) == "pending"
    [entry] = audit_rows(clean_db)
    assert entry["actor"] == "dashboard:admin"
    assert (entry["action"], entry["row_count"], entry["detail"]["ids"]) == ("replay", 1, [row_id])
    page = client.get(response.headers["location"], auth=AUTH).text
    assert 'id="notice"' in page and re.search(r'id="status" class="status-pending">pending<', page)
    assert 'id="replay"' not in page


def test_replay_of_a_done_row_changes_nothing(client: TestClient, clean_db: Engine) -> None:
    row_id = add(clean_db, "done")
    token = csrf_of(client, f"/rows/{add(clean_db)}")
    response = client.post(
        f"/rows/{row_id}/replay", data={"csrf": token}, headers={"Origin": ORIGIN}, auth=AUTH
    )
    assert response.status_code == 400
    assert error_of(response) == f"only failed rows can be replayed: {row_id} (done)"
    assert status_of(clean_db, row_id) == "done"
    assert audit_rows(clean_db) == []
    unknown = client.post(
        "/rows/999999/replay", data={"csrf": token}, headers={"Origin": ORIGIN}, auth=AUTH
    )
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    "form",
    [{}, {"csrf": ""}, {"csrf": "0" * 64}],
    ids=["missing", "empty", "wrong"],
)
def test_post_without_the_csrf_token_is_403(
    client: TestClient, clean_db: Engine, form: dict[str, str]
) -> None:
    row_id = add(clean_db)
    response = client.post(
        f"/rows/{row_id}/replay", data=form, headers={"Origin": ORIGIN}, auth=AUTH
    )
    assert response.status_code == 403
    assert "CSRF" in error_of(response)
    assert status_of(clean_db, row_id) == "failed"
    assert audit_rows(clean_db) == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.test"},
        {"Origin": f"http://{HOST}.evil.test"},
        {"Origin": "null"},
        {"Referer": "http://evil.test/page"},
        {},
    ],
    ids=["origin", "suffix", "null", "referer", "neither"],
)
def test_cross_site_post_is_403(
    client: TestClient, clean_db: Engine, headers: dict[str, str]
) -> None:
    row_id = add(clean_db)
    token = csrf_of(client, f"/rows/{row_id}")
    response = client.post(
        f"/rows/{row_id}/replay", data={"csrf": token}, headers=headers, auth=AUTH
    )
    assert response.status_code == 403
    assert error_of(response) == "refused: the form was not sent from this site"
    assert status_of(clean_db, row_id) == "failed"


def test_same_site_referer_without_origin_is_accepted(client: TestClient, clean_db: Engine) -> None:
    row_id = add(clean_db)
    response = client.post(
        f"/rows/{row_id}/replay",
        data={"csrf": csrf_of(client, f"/rows/{row_id}")},
        headers={"Referer": f"{ORIGIN}/rows/{row_id}"},
        auth=AUTH,
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert status_of(clean_db, row_id) == "pending"


def test_bulk_replay_confirmation_then_replay(client: TestClient, clean_db: Engine) -> None:
    timeouts = [add(clean_db, last_error="UpdateUsers: timeout") for _ in range(3)]
    other = add(clean_db, last_error="HTTP 400 code 4")
    done = add(clean_db, "done", last_error="timeout once")
    confirm = client.get("/replay", params={"error": "timeout", "since": "1h"}, auth=AUTH)
    assert confirm.status_code == 200
    assert "<strong>3</strong> failed rows would go back to pending" in confirm.text
    assert all(status_of(clean_db, i) == "failed" for i in timeouts)
    assert audit_rows(clean_db) == []
    form = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', confirm.text))
    assert form["status"] == "failed" and form["error"] == "timeout"
    assert form["since"].startswith(str(datetime.now(UTC).year))  # pinned as a time
    done_page = client.post(
        "/replay", data={**form, "per_second": "100"}, headers={"Origin": ORIGIN}, auth=AUTH
    )
    assert done_page.status_code == 200
    assert "Replayed 3 rows" in done_page.text
    assert [status_of(clean_db, i) for i in timeouts] == ["pending"] * 3
    assert (status_of(clean_db, other), status_of(clean_db, done)) == ("failed", "done")
    [entry] = audit_rows(clean_db)
    assert (entry["actor"], entry["row_count"]) == ("dashboard:admin", 3)
    assert entry["detail"]["filters"]["error"] == "timeout"


def test_front_page_leads_with_failures_grouped_by_cause(
    client: TestClient, clean_db: Engine
) -> None:
    too_long = "UpdateUsers HTTP 400 code 4: user {} name is too long"
    for n in (11, 12, 13):
        add(clean_db, last_error=too_long.format(n))
    add(clean_db, target_kind="conversation", last_error="after 5 attempts: GetOrCreateChannel: 42")
    add(clean_db, "done", last_error=too_long.format(14))
    page = client.get("/", auth=AUTH).text
    assert page.index('id="groups"') < page.index('id="stats"')
    groups = re.findall(
        r'<tr id="group-([0-9a-f]{12})" class="group">\s*<td class="num">(\d+)</td>\s*'
        r'<td><code class="cause">([^<]*)</code>',
        page,
    )
    assert [(count, cause) for _, count, cause in groups] == [
        ("3", "UpdateUsers HTTP 400 code 4: user &lt;n&gt; name is too long"),
        ("1", "GetOrCreateChannel: &lt;n&gt;"),
    ]
    assert f'id="replay-{groups[0][0]}">Replay 3' in page
    with clean_db.begin() as conn:
        conn.execute(update(outbox).values(status="done"))
    assert 'id="no-failures"' in client.get("/", auth=AUTH).text


def test_replay_of_a_cause_confirmation_then_replay(client: TestClient, clean_db: Engine) -> None:
    too_long = [
        add(clean_db, last_error=f"UpdateUsers HTTP 400 code 4: user {n} too long") for n in (1, 2)
    ]
    other = add(clean_db, last_error="SendMessage HTTP 400 code 4: message too large")
    [key] = [g.key for g in failure_groups(clean_db) if g.count == 2]
    confirm = client.get(f"/errors/{key}/replay", auth=AUTH)
    assert confirm.status_code == 200
    assert "<strong>2</strong> failed rows would go back to pending" in confirm.text
    assert all(status_of(clean_db, i) == "failed" for i in too_long)
    assert audit_rows(clean_db) == []
    form = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', confirm.text))
    assert set(form) == {"csrf", "until"}
    # a row of the same cause failing after the confirmation is left as it is
    later = add(
        clean_db,
        last_error="UpdateUsers HTTP 400 code 4: user 3 too long",
        updated_at=datetime.now(UTC) + timedelta(minutes=1),
    )
    done_page = client.post(
        f"/errors/{key}/replay",
        data={**form, "per_second": "100"},
        headers={"Origin": ORIGIN},
        auth=AUTH,
    )
    assert done_page.status_code == 200
    assert "Replayed 2 rows" in done_page.text
    assert [status_of(clean_db, i) for i in too_long] == ["pending", "pending"]
    assert (status_of(clean_db, other), status_of(clean_db, later)) == ("failed", "failed")
    [entry] = audit_rows(clean_db)
    assert (entry["actor"], entry["row_count"]) == ("dashboard:admin", 2)
    assert entry["detail"]["cause"] == "UpdateUsers HTTP 400 code 4: user <n> too long"
    assert entry["detail"]["ids"] == too_long


def test_replay_of_a_cause_refusals(client: TestClient, clean_db: Engine) -> None:
    row_id = add(clean_db, last_error="UpdateUsers HTTP 400 code 4: too long")
    [group] = failure_groups(clean_db)
    assert client.get("/errors/nope/replay", auth=AUTH).status_code == 404
    gone = client.get("/errors/0123456789ab/replay", auth=AUTH)
    assert gone.status_code == 404 and "no failed rows of cause" in error_of(gone)
    form = {"until": group.last_seen.isoformat() if group.last_seen else ""}
    no_csrf = client.post(
        f"/errors/{group.key}/replay", data=form, headers={"Origin": ORIGIN}, auth=AUTH
    )
    assert no_csrf.status_code == 403
    token = csrf_of(client, f"/errors/{group.key}/replay")
    cross = client.post(
        f"/errors/{group.key}/replay",
        data={**form, "csrf": token},
        headers={"Origin": "http://evil.test"},
        auth=AUTH,
    )
    assert cross.status_code == 403
    no_time = client.post(
        f"/errors/{group.key}/replay", data={"csrf": token}, headers={"Origin": ORIGIN}, auth=AUTH
    )
    assert no_time.status_code == 400 and "lacks the time" in error_of(no_time)
    assert status_of(clean_db, row_id) == "failed" and audit_rows(clean_db) == []


def test_bulk_replay_bad_input(client: TestClient, clean_db: Engine) -> None:
    row_id = add(clean_db)
    not_failed = client.get("/replay", params={"status": "done"}, auth=AUTH)
    assert not_failed.status_code == 400
    assert error_of(not_failed) == "only failed rows can be replayed"
    nothing = client.get("/replay", params={"kind": "message"}, auth=AUTH)
    assert "nothing to replay" in nothing.text and 'id="confirm"' not in nothing.text
    pace = client.post(
        "/replay",
        data={"csrf": csrf_of(client, f"/rows/{row_id}"), "per_second": "fast"},
        headers={"Origin": ORIGIN},
        auth=AUTH,
    )
    assert pace.status_code == 400
    assert status_of(clean_db, row_id) == "failed"


def test_mounted_under_a_prefix(clean_db: Engine, dashboard_settings: Settings) -> None:
    parent = Starlette(
        routes=[Mount("/outbox", app=create_app(dashboard_settings, engine=clean_db))]
    )
    row_id = add(clean_db)
    with TestClient(parent, base_url=ORIGIN) as client:
        page = client.get("/outbox/rows", auth=AUTH)
        assert f'href="/outbox/rows/{row_id}"' in page.text
        login = client.post(
            "/outbox/login",
            data={"token": TOKEN},
            headers={"Origin": ORIGIN},
            follow_redirects=False,
        )
        assert login.headers["location"] == "/outbox/"
        assert "Path=/outbox" in login.headers["set-cookie"]
        assert client.get("/outbox/").status_code == 200


def test_secrets_never_in_pages(
    client: TestClient, clean_db: Engine, database_url: str, emu: Emulator
) -> None:
    row_id = add(clean_db, last_error="boom")
    done = add(clean_db, "done")
    token = csrf_of(client, f"/rows/{row_id}")
    responses = [
        client.get(path, auth=AUTH)
        for path in ("/", "/rows", f"/rows/{row_id}", "/replay", "/rows?since=x", "/rows/zz")
    ]
    responses += [client.get(path) for path in ("/", "/login", f"/rows/{row_id}")]
    post = {"headers": {"Origin": ORIGIN}, "auth": AUTH}
    responses.append(client.post(f"/rows/{done}/replay", data={"csrf": token}, **post))
    responses.append(client.post(f"/rows/{row_id}/replay", data={}, **post))
    responses.append(client.post("/login", data={"token": "x"}, headers={"Origin": ORIGIN}))
    responses.append(client.post("/replay", data={"csrf": token}, **post))
    for response in responses:
        shown = response.text + str(response.headers)
        for secret in (*SECRETS, emu.api_secret):
            assert secret not in shown, response.url
        assert database_url not in shown


# -- the command ---------------------------------------------------------------------


def _command_env(database_url: str, **extra: str) -> dict[str, str]:
    return clean_environ(DATABASE_URL=database_url, **extra)


@pytest.mark.slow
def test_command_refuses_without_credentials(database_url: str, tmp_path: Path) -> None:
    done = subprocess.run(
        script("stream-outbox", "dashboard"),
        env=_command_env(database_url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: the dashboard needs credentials: set OUTBOX_DASHBOARD_USER and "
        "OUTBOX_DASHBOARD_PASSWORD (HTTP Basic) and/or OUTBOX_DASHBOARD_TOKEN"
    ]


@pytest.mark.slow
def test_command_serves_and_logs_no_secret(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = _command_env(
        database_url,
        OUTBOX_DASHBOARD_USER=USER,
        OUTBOX_DASHBOARD_PASSWORD=PASSWORD,
        OUTBOX_DASHBOARD_TOKEN=TOKEN,
        GETSTREAM_API_SECRET=STREAM_SECRET,
    )
    command = script("stream-outbox", "dashboard", "--port", str(port))
    process = start(command, env=env, cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        serving(process, f"{base}/")
        assert httpx2.get(f"{base}/").status_code == 401
        assert httpx2.get(f"{base}/", auth=AUTH).status_code == 200
    finally:
        output = stop(process)
    assert "sign-in: basic and token" in output
    for secret in SECRETS:
        assert secret not in output
