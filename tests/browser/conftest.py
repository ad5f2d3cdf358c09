"""Browser tests' fixtures: Debian's Chromium driven headless by Playwright
(:mod:`tests.support.browser`). A missing browser or an unbuilt page fails the run with
one line saying what to do; nothing is skipped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from tests.support.browser import launch, missing_chromium


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless, with its background networking off."""
    problem = missing_chromium()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    launched = launch(playwright)
    yield launched
    launched.close()
