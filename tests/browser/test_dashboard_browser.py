"""The dashboard in a real browser: headless Chromium (Debian's) driven by Playwright.

The dashboard runs under uvicorn in a thread on a free port against the test
database. Chromium is Debian's ``/usr/bin/chromium`` (``apt-get install chromium``),
never a download: a missing browser fails the run with one line saying what to
install, it is not skipped.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import Error as PlaywrightError
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from stream_outbox.app_hooks.outbox import audit, outbox
from stream_outbox.app_hooks.reference import User
from tests.support.dashboard import PASSWORD, TOKEN, USER, serving
from tests.support.outbox import add_row
from tests.support.pipeline import Pipeline
from tests.support.story import invite

pytestmark = pytest.mark.slow

FAILURE = "UpdateUsers HTTP 400 code 4: name is too long"


@pytest.fixture()
def dashboard(database_url: str, clean_db: Engine) -> Iterator[str]:
    """The dashboard under uvicorn in a thread; its base URL."""
    with serving(database_url, clean_db) as url:
        yield url


def _failed_row(engine: Engine) -> int:
    return add_row(
        engine,
        target_id=str(uuid.uuid4()),
        event="updated",
        status="failed",
        attempts=3,
        last_error=FAILURE,
    )


def _settled_content(page: Page) -> str:
    """The page's HTML once a cancelled navigation has settled."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return page.content()
        except PlaywrightError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_without_credentials_the_browser_gets_401_and_no_data(
    browser: Browser, dashboard: str, clean_db: Engine
) -> None:
    """No credentials: the Basic challenge is cancelled and the page stays empty.

    Headless Chromium under Playwright answers a Basic challenge it has no
    credentials for by cancelling it (``ERR_INVALID_AUTH_CREDENTIALS``): the
    401 arrives and nothing is shown. Wrong credentials show our 401 page.
    """
    row_id = _failed_row(clean_db)
    paths = ("/", "/rows?status=failed", f"/rows/{row_id}")
    anonymous = browser.new_context()
    page = anonymous.new_page()
    statuses: list[int] = []
    page.on("response", lambda response: statuses.append(response.status))
    for path in paths:
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            page.goto(dashboard + path)
        shown = _settled_content(page)
        assert FAILURE not in shown and str(row_id) not in shown
    assert statuses == [401] * len(paths)
    anonymous.close()
    wrong = browser.new_context(http_credentials={"username": USER, "password": "wrong"})
    page = wrong.new_page()
    for path in paths:
        response = page.goto(dashboard + path)
        assert response is not None and response.status == 401, path
        expect(page.locator("#error")).to_have_text("authentication required")
        assert FAILURE not in page.content() and f"row-{row_id}" not in page.content()
    wrong.close()


def test_replay_a_failed_row_with_basic_auth(
    browser: Browser, dashboard: str, clean_db: Engine
) -> None:
    row_id = _failed_row(clean_db)
    context = browser.new_context(http_credentials={"username": USER, "password": PASSWORD})
    page = context.new_page()
    page.goto(dashboard + "/")
    expect(page.locator("#total-failed")).to_have_text("1")
    page.get_by_role("link", name="Failed", exact=True).click()
    row = page.locator(f"#row-{row_id}")
    expect(row).to_contain_text("failed")
    expect(row).to_contain_text(FAILURE[:40])
    row.get_by_role("link", name=str(row_id)).click()
    expect(page).to_have_url(re.compile(rf"/rows/{row_id}$"))
    expect(page.locator("#status")).to_have_text("failed")
    expect(page.locator("#last-error")).to_have_text(FAILURE)
    page.locator("#replay").click()
    expect(page.locator("#status")).to_have_text("pending")
    expect(page.locator("#notice")).to_contain_text("Replayed")
    expect(page.locator("#audit")).to_contain_text("dashboard:admin")
    with clean_db.connect() as conn:
        assert conn.scalar(select(outbox.c.status).where(outbox.c.id == row_id)) == "pending"
        assert conn.scalar(select(audit.c.actor)) == "dashboard:admin"
    assert PASSWORD not in page.content()
    context.close()


def test_token_login_and_bulk_replay(browser: Browser, dashboard: str, clean_db: Engine) -> None:
    ids = [_failed_row(clean_db) for _ in range(2)]
    context = browser.new_context()
    page = context.new_page()
    page.goto(dashboard + "/login")
    page.locator("input[name=token]").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("header")).to_contain_text("signed in as token")
    page.goto(dashboard + "/rows?status=failed")
    page.locator("#bulk-replay").click()
    expect(page.locator("#count")).to_contain_text("2 failed rows would go back to pending")
    page.locator("#confirm").click()
    expect(page.locator("#replayed")).to_contain_text("Replayed 2 rows")
    with clean_db.connect() as conn:
        statuses = conn.scalars(select(outbox.c.status).where(outbox.c.id.in_(ids))).all()
    assert list(statuses) == ["pending", "pending"]
    assert all(TOKEN not in cookie.get("value", "") for cookie in context.cookies())
    context.close()


def _baseline(page: Page) -> float:
    """The y of the hour's lag chart's zero line (its ``0 s`` tick)."""
    zero = page.locator("#chart-lag-hour g.y-tick").first.locator("line")
    return float(zero.get_attribute("y1") or "nan")


def _last_lag(page: Page) -> float:
    """The y of the last point of the hour's lag chart (smaller: an older row waits)."""
    points = page.locator("#chart-lag-hour polyline").get_attribute("points") or ""
    return float(points.split()[-1].split(",")[1])


def _statuses(engine: Engine, ids: list[int]) -> list[str]:
    with engine.connect() as conn:
        query = select(outbox.c.id, outbox.c.status).where(outbox.c.id.in_(ids))
        found = {row.id: row.status for row in conn.execute(query)}
    return [found[i] for i in ids]


def test_failures_of_two_causes_show_as_two_groups_and_one_is_replayed_to_done(
    browser: Browser,
    dashboard: str,
    pipeline: Pipeline,
    session_factory: Callable[[], Session],
) -> None:
    # Given Stream refusing a conversation for one reason, then new users for another
    emu = pipeline.emu
    emu.inject_failure("GetOrCreateChannel", 400, times=10, code=16, message="channel 9 is frozen")
    with session_factory() as session, session.begin():
        invite(session)
    pipeline.drain()
    emu.clear_faults()
    emu.inject_failure("UpdateUsers", 400, times=10, code=4, message="user 17 name is too long")
    with session_factory() as session, session.begin():
        session.add_all([User(email=f"new{n}@example.com") for n in range(3)])
    pipeline.drain()
    emu.clear_faults()
    failed = [row for row in pipeline.rows() if row["status"] == "failed"]
    users = [row["id"] for row in failed if row["target_kind"] == "user"]
    assert len(users) == 3 and len(failed) == 4, failed
    # When the operator opens the dashboard
    context = browser.new_context(http_credentials={"username": USER, "password": PASSWORD})
    page = context.new_page()
    page.goto(dashboard + "/")
    # Then the failures show as two groups, one per cause
    groups = page.locator("#groups tr.group")
    expect(groups).to_have_count(2)
    too_long = groups.filter(has_text="UpdateUsers HTTP 400 code 4").filter(
        has_text='"user <n> name is too long"'
    )
    frozen = groups.filter(has_text="GetOrCreateChannel HTTP 400 code 16").filter(
        has_text='"channel <n> is frozen"'
    )
    expect(too_long).to_contain_text(str(len(users)))
    expect(frozen).to_contain_text("conversation")
    # When they replay the users' cause, confirming first
    too_long.get_by_role("link", name=re.compile("Replay")).click()
    expect(page.locator("#count")).to_contain_text(f"{len(users)} failed row")
    assert _statuses(pipeline.engine, users) == ["failed"] * len(users)
    page.locator("#confirm").click()
    expect(page.locator("#replayed")).to_contain_text(f"Replayed {len(users)} row")
    # Then its rows are pending (the lag chart's last point above its baseline: a row
    # waits), then done through the relay, a worker and the emulator
    assert _statuses(pipeline.engine, users) == ["pending"] * len(users)
    page.goto(dashboard + "/")
    waiting = _last_lag(page)
    pipeline.drain()
    assert _statuses(pipeline.engine, users) == ["done"] * len(users)
    page.goto(dashboard + "/")
    # and the lag chart shows the backlog drained: its last point back on the baseline
    drained = _last_lag(page)
    assert waiting < drained == _baseline(page)
    settled = page.locator("#chart-settled-hour rect.failed")
    assert any(
        float(h or 0) > 0
        for h in settled.evaluate_all("rs => rs.map(r => r.getAttribute('height'))")
    )
    expect(groups).to_have_count(1)
    expect(groups.first).to_contain_text("GetOrCreateChannel HTTP 400 code 16")
    page.goto(dashboard + f"/rows/{users[0]}")
    expect(page.locator("#status")).to_have_text("done")
    expect(page.locator("#audit")).to_contain_text("dashboard:admin")
    context.close()
