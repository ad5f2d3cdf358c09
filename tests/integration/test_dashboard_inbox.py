"""The dashboard's inbox pages over HTTP (Starlette's TestClient) on real PostgreSQL:
Stream's events listed by status, one shown as Stream sent it, and replayed (CSRF)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select, update
from starlette.testclient import TestClient

from stream_outbox.app_hooks.outbox import audit, inbox
from stream_outbox.worker.dashboard import create_app
from stream_outbox.worker.inbound.inbox import Inbox
from stream_outbox.worker.inbound.inbox_event import event_from
from stream_outbox.worker.settings import Settings
from tests.support.inbound import message_event

AUTH = ("admin", "pw-inbox-7d1f")
ORIGIN = "http://dash.test"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@pytest.fixture()
def client(clean_db: Engine, database_url: str) -> Iterator[TestClient]:
    settings = Settings(
        database_url=database_url, dashboard_user=AUTH[0], dashboard_password=AUTH[1]
    )
    with TestClient(create_app(settings, engine=clean_db), base_url=ORIGIN) as test_client:
        yield test_client


@pytest.fixture()
def ids(clean_db: Engine) -> list[int]:
    """Three inbox rows: pending, failed, and an unknown type (ignored)."""
    events = [
        message_event("messaging:a", "m1"),
        message_event("messaging:b", "m2"),
        {**message_event("messaging:b", "m3"), "type": "typing.start"},
    ]
    Inbox(clean_db).store_many([event_from(e, f"w{n}") for n, e in enumerate(events)])
    with clean_db.begin() as conn:
        found = list(conn.scalars(select(inbox.c.id).order_by(inbox.c.id)))
        conn.execute(
            update(inbox)
            .where(inbox.c.id == found[1])
            .values(status="failed", last_error="IntegrityError: <no such user>")
        )
    return found


def test_the_inbox_page_counts_and_lists_rows(client: TestClient, ids: list[int]) -> None:
    page = client.get("/inbox", auth=AUTH)
    assert page.status_code == 200
    assert "1 pending" in page.text and "1 failed" in page.text and "1 ignored" in page.text
    assert all(f'id="inbox-{row_id}"' in page.text for row_id in ids)
    assert "IntegrityError: &lt;no such user&gt;" in page.text  # escaped
    failed = client.get("/inbox?status=failed", auth=AUTH).text
    assert f'id="inbox-{ids[1]}"' in failed and f'id="inbox-{ids[0]}"' not in failed
    by_channel = client.get("/inbox?cid=messaging:a", auth=AUTH).text
    assert f'id="inbox-{ids[0]}"' in by_channel and f'id="inbox-{ids[1]}"' not in by_channel
    bad = client.get("/inbox?status=bogus", auth=AUTH)
    assert bad.status_code == 400 and "unknown status &#39;bogus&#39;" in bad.text
    assert client.get("/inbox").status_code == 401  # signed in only


def test_a_failed_inbox_row_is_shown_and_replayed(
    client: TestClient, ids: list[int], clean_db: Engine
) -> None:
    page = client.get(f"/inbox/{ids[1]}", auth=AUTH)
    assert page.status_code == 200 and 'id="replay"' in page.text
    assert "&#34;id&#34;: &#34;m2&#34;" in page.text  # the payload, escaped
    assert 'id="replay"' not in client.get(f"/inbox/{ids[0]}", auth=AUTH).text  # pending
    token = CSRF.search(page.text)
    assert token is not None
    forged = client.post(
        f"/inbox/{ids[1]}/replay", data={"csrf": "0" * 64}, headers={"Origin": ORIGIN}, auth=AUTH
    )
    assert forged.status_code == 403
    done = client.post(
        f"/inbox/{ids[1]}/replay",
        data={"csrf": token.group(1)},
        headers={"Origin": ORIGIN},
        auth=AUTH,
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == f"/inbox/{ids[1]}?replayed=1"
    with clean_db.connect() as conn:
        assert conn.scalar(select(inbox.c.status).where(inbox.c.id == ids[1])) == "pending"
        assert list(conn.execute(select(audit.c.actor, audit.c.action))) == [
            ("dashboard:admin", "inbox_replay")
        ]
    assert client.get("/inbox/999999", auth=AUTH).status_code == 404
