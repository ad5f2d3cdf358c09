"""A screenshot of the chat page with a conversation in progress, for the docs.

    uv run python -m examples.chat_app.screenshot docs/images/chat-page.png

Starts the stack (:mod:`examples.chat_app.stack`), opens the page as both users in
headless Chromium (Debian's), has them talk (the organizer through the legacy endpoint,
the guest in the page's composer) and saves the organizer's page once the guest's read
receipt shows. Needs the page built (``./dev page``) and Playwright (a dev dependency).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

from examples.chat_app.stack import running_stack
from tests.support.browser import launch, missing_chromium
from tests.support.chat_page import COMPOSER, MESSAGE_TEXT, missing_build, open_page, post_legacy

LINES = (
    ("organizer", "Welcome to the launch chat! Doors open at 7."),
    ("guest", "Thanks Olga, can I still bring a friend?"),
    ("organizer", "Of course, add their name to the invitation."),
    ("guest", "Done. See you there!"),
)


def take(path: Path) -> None:
    """Play the conversation and save the organizer's page to ``path`` (PNG)."""
    problem = missing_build() or missing_chromium()
    if problem is not None:
        raise SystemExit(problem)
    with running_stack() as stack, sync_playwright() as driver, requests.Session() as http:
        http.trust_env = False
        browser = launch(driver)
        cast = stack.cast
        organizer = open_page(browser, stack, cast.organizer, cast.conversation)
        guest = open_page(browser, stack, cast.guest, cast.conversation)
        for who, text in LINES:
            if who == "organizer":
                post_legacy(stack, http, cast.organizer, cast.conversation, text)
            else:
                box = guest.locator(COMPOSER)
                box.fill(text)
                box.press("Enter")
            for page in (organizer, guest):
                page.locator(MESSAGE_TEXT, has_text=text).wait_for(timeout=15_000)
        guest.locator(COMPOSER).fill("Looking forward to it")  # the guest is typing
        organizer.locator("[data-testid=message-status-read-by]").first.wait_for(timeout=15_000)
        path.parent.mkdir(parents=True, exist_ok=True)
        organizer.screenshot(path=str(path))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="the PNG file to write")
    take(parser.parse_args().path)


if __name__ == "__main__":
    main()
