"""The dashboard's front page over a 1,000,000-row outbox, in headless Chromium: the
counts by status, the failures grouped by cause, the charts' scales and dated axes, the
lag beside its line. What the outbox holds is :mod:`tests.support.big_outbox`; how fast
the page answers is the benchmark's business (``benchmarks/operators_views.py``), not
this test's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import Engine

from tests.support import big_outbox
from tests.support.dashboard import PASSWORD, USER, serving
from tests.support.database import empty_tables

pytestmark = pytest.mark.slow

DATED = re.compile(r"^(?P<date>[A-Z][a-z]{2} \d{1,2}) \d{2}:\d{2}$")
CLOCK = re.compile(r"^\d{2}:\d{2}$")


@pytest.fixture(scope="module")
def filled(engine: Engine) -> Iterator[big_outbox.Fill]:
    """The test database holding the big outbox (emptied after the module)."""
    empty_tables(engine)
    try:
        yield big_outbox.fill(engine)
    finally:
        empty_tables(engine)


@pytest.fixture(scope="module")
def front_page(
    browser: Browser, database_url: str, engine: Engine, filled: big_outbox.Fill
) -> Iterator[Page]:
    """The front page, loaded once, signed in."""
    with serving(database_url, engine) as url:
        context = browser.new_context(
            http_credentials={"username": USER, "password": PASSWORD},
            viewport={"width": 1280, "height": 900},
        )
        page = context.new_page()
        response = page.goto(url + "/", timeout=60_000)
        assert response is not None and response.status == 200
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script" not in csp
        yield page
        context.close()


def texts(page: Page, selector: str) -> list[str]:
    return [text.strip() for text in page.locator(selector).all_text_contents()]


def test_counts_by_status(front_page: Page, filled: big_outbox.Fill) -> None:
    expect(front_page.locator("#total-failed")).to_have_text(str(filled.failed))
    expect(front_page.locator("#total-pending")).to_have_text(str(filled.pending))
    expect(front_page.locator("#total-done")).to_have_text(str(filled.done))
    expect(front_page.locator("#oldest-pending")).to_contain_text(re.compile(r"^1[01]m"))


def test_failures_grouped_by_cause(front_page: Page, filled: big_outbox.Fill) -> None:
    groups = front_page.locator("#groups tr.group")
    expect(groups).to_have_count(len(filled.failed_by_cause))
    for cause, count in filled.failed_by_cause.items():
        row = groups.filter(has=front_page.get_by_text(cause.shown, exact=True))
        expect(row).to_have_count(1)
        expect(row.locator("td.num")).to_have_text(str(count))
        expect(row.locator("td").nth(4)).to_have_text(cause.kind)
    biggest = groups.first.locator("code.cause")
    expect(biggest).to_have_text(big_outbox.BURST.shown)  # largest first


def test_charts_have_round_y_ticks(front_page: Page) -> None:
    # ~465 rows a minute near now (the wave's trough), ~20,800 a quarter hour at its crest
    assert texts(front_page, "#chart-settled-hour g.y-tick text") == ["0", "200", "400", "600"]
    assert texts(front_page, "#chart-settled-day g.y-tick text") == ["0", "10k", "20k", "30k"]
    # the oldest pending row is 10 minutes old; the burst's backlog peaked near 23 minutes
    hour_lag = ["0 min", "5 min", "10 min", "15 min"]
    assert texts(front_page, "#chart-lag-hour g.y-tick text") == hour_lag
    day_lag = ["0 min", "10 min", "20 min", "30 min"]
    assert texts(front_page, "#chart-lag-day g.y-tick text") == day_lag


def _window_end(moment: datetime) -> datetime:
    """The end of the day chart's window at ``moment``: the next quarter hour."""
    start = moment.replace(minute=moment.minute // 15 * 15, second=0, microsecond=0)
    return start + timedelta(minutes=15)


def _date(moment: datetime) -> str:
    return f"{moment:%b} {moment.day}"


def test_the_day_axes_are_dated_and_the_hour_axes_are_not(front_page: Page) -> None:
    # The window ends at the next quarter hour (after midnight from 23:45); the page was
    # drawn a moment before this test looks
    ends = {_window_end(datetime.now(UTC) - timedelta(minutes=m)) for m in (0, 5)}
    last_dates = {_date(end) for end in ends}
    window_dates = last_dates | {_date(end - timedelta(days=1)) for end in ends}
    for chart in ("settled", "lag"):
        hour = texts(front_page, f"#chart-{chart}-hour g.x-tick text")
        assert 4 <= len(hour) <= 5 and all(CLOCK.match(label) for label in hour), hour
        day = texts(front_page, f"#chart-{chart}-day g.x-tick text")
        assert 4 <= len(day) <= 5, day
        dates = [DATED.match(label) for label in day]
        assert all(dates), day
        # the axis runs over the window's day and the day before, up to its end
        assert {m["date"] for m in dates if m} <= window_dates, day
        assert dates[-1] and dates[-1]["date"] in last_dates, day


def test_the_lag_is_written_beside_its_line(front_page: Page) -> None:
    for window in ("hour", "day"):
        now = front_page.locator(f"#chart-lag-{window} text.now")
        expect(now).to_have_text(re.compile(r"^now 1[01] min$"))
        line = front_page.locator(f"#chart-lag-{window} polyline")
        last_x = float((line.get_attribute("points") or "").split()[-1].split(",")[0])
        assert float(now.get_attribute("x") or 0) > last_x
        box, chart = now.bounding_box(), front_page.locator(f"#chart-lag-{window} svg")
        frame = chart.bounding_box()
        assert box and frame and box["x"] + box["width"] <= frame["x"] + frame["width"]
