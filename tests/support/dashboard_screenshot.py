"""Screenshots of the dashboard's front page over a big outbox, for the docs.

    uv run python -m tests.support.dashboard_screenshot docs/images/dashboard.png

Fills a scratch database with :mod:`tests.support.big_outbox` (a day of 1,000,000 settled
rows, failures of four causes, a backlog, rows pending), serves the dashboard over it and
saves, from headless Chromium (Debian's), the whole front page to the path given and its
charts alone beside it (``dashboard-charts.png``). Needs PostgreSQL and Playwright (a
dev dependency).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright
from sqlalchemy import create_engine

from tests.support import big_outbox
from tests.support.browser import launch, missing_chromium
from tests.support.dashboard import PASSWORD, USER, serving
from tests.support.database import outbox_database


def take(path: Path, rows: int = 1_000_000) -> list[Path]:
    """Save the front page to ``path`` and its charts to ``<stem>-charts.png``; both paths."""
    problem = missing_chromium()
    if problem is not None:
        raise SystemExit(problem)
    charts = path.with_name(f"{path.stem}-charts{path.suffix}")
    with outbox_database("dashboard_shot") as url, sync_playwright() as driver:
        engine = create_engine(url)
        try:
            big_outbox.fill(engine, rows=rows)
            with serving(url, engine) as base:
                browser = launch(driver)
                context = browser.new_context(
                    http_credentials={"username": USER, "password": PASSWORD},
                    viewport={"width": 1280, "height": 900},
                )
                page = context.new_page()
                page.goto(base + "/", timeout=60_000)
                path.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(path), full_page=True)
                page.locator("#charts").screenshot(path=str(charts))
                browser.close()
        finally:
            engine.dispose()
    return [path, charts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="the PNG file of the whole front page")
    parser.add_argument("--rows", type=int, default=1_000_000, help="settled rows to fill")
    arguments = parser.parse_args()
    for saved in take(arguments.path, arguments.rows):
        print(saved)


if __name__ == "__main__":
    main()
