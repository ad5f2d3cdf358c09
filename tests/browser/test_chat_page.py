"""The owners' chat page (``examples/frontend``, stream-chat-react) in Chromium, two users
in two browser contexts, against the whole stack (``examples/chat_app/stack.py``): the
emulator over its WebSocket, the reference app, and the real relay, worker and inbound
processes. What one user or the old backend does is seen live by the other, and what a
user does in the page comes home to the app's database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from examples.chat_app.seed import OLD_MESSAGES
from examples.chat_app.stack import Stack, running_stack
from stream_outbox.app_hooks.reference import ConversationParticipant, Message
from tests.support.chat_page import (
    MESSAGE_TEXT,
    captured,
    missing_build,
    new_conversation,
    open_page,
    post_legacy,
)
from tests.support.processes import wait_for

pytestmark = pytest.mark.slow

LIVE_MS = 15_000  # what "live" may take at most here (shared machine); no reload


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    problem = missing_build()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    with running_stack() as running:
        yield running


@pytest.fixture(scope="module")
def sessions(stack: Stack) -> sessionmaker[Session]:
    return captured(stack.engine)


@pytest.fixture()
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture()
def conversation(stack: Stack, sessions: sessionmaker[Session]) -> uuid.UUID:
    """A conversation of the two users of its own, in Stream."""
    return new_conversation(stack, sessions)


@pytest.fixture()
def pages(browser: Browser, stack: Stack, conversation: uuid.UUID) -> Iterator[tuple[Page, Page]]:
    """The organizer's page and the guest's, each in a browser context of its own."""
    organizer = open_page(browser, stack, stack.cast.organizer, conversation)
    guest = open_page(browser, stack, stack.cast.guest, conversation)
    yield organizer, guest
    for page in (organizer, guest):
        page.context.close()


def _texts_in_db(stack: Stack, conversation: uuid.UUID) -> list[str]:
    query = select(Message.content).where(Message.conversation_id == conversation)
    with stack.engine.connect() as conn:
        return list(conn.scalars(query.order_by(Message.created_at)))


def _message(page: Page, text: str) -> object:
    return page.locator(MESSAGE_TEXT, has_text=text)


def _mark_no_reload(page: Page) -> None:
    page.evaluate("window.__sameDocument = true")


def _not_reloaded(page: Page) -> bool:
    return bool(page.evaluate("window.__sameDocument === true"))


def _type(page: Page, text: str) -> None:
    box = page.locator("textarea.str-chat__message-textarea")
    box.click()
    box.fill(text)
    box.press("Enter")


def test_a_legacy_post_appears_live_in_the_other_users_page(
    stack: Stack, pages: tuple[Page, Page], conversation: uuid.UUID, http: requests.Session
) -> None:
    organizer, guest = pages
    _mark_no_reload(guest)
    # When the organizer's old client posts through the legacy endpoint
    post_legacy(stack, http, stack.cast.organizer, conversation, "Posted by the old page")
    # Then the guest's page shows it, with no reload, and so does the organizer's
    expect(_message(guest, "Posted by the old page")).to_be_visible(timeout=LIVE_MS)
    expect(_message(organizer, "Posted by the old page")).to_be_visible(timeout=LIVE_MS)
    assert _not_reloaded(guest)


def test_a_message_typed_in_the_page_is_live_for_the_other_and_in_the_database(
    stack: Stack, pages: tuple[Page, Page], conversation: uuid.UUID, http: requests.Session
) -> None:
    organizer, guest = pages
    _mark_no_reload(organizer)
    # When the guest types a message in the page's composer
    _type(guest, "Typed in the new page")
    # Then the organizer sees it live
    expect(_message(organizer, "Typed in the new page")).to_be_visible(timeout=LIVE_MS)
    assert _not_reloaded(organizer)
    # And it is in the app's database (Stream's webhook, the inbound process), where the
    # legacy endpoint the old page polls serves it
    wait_for(
        lambda: _texts_in_db(stack, conversation) == ["Typed in the new page"],
        "the typed message in the app's database",
    )
    polled = http.get(
        f"{stack.app_url}/chat/conversations/{conversation}/messages",
        headers={"X-Demo-User": str(stack.cast.organizer)},
        timeout=10,
    ).json()
    assert [m["content"] for m in polled] == ["Typed in the new page"]


def test_an_edit_and_a_deletion_are_seen_on_both_sides(
    stack: Stack,
    pages: tuple[Page, Page],
    conversation: uuid.UUID,
    sessions: sessionmaker[Session],
) -> None:
    organizer, guest = pages
    # Given a message the guest typed, seen by the organizer
    _type(guest, "Firts draft")
    expect(_message(organizer, "Firts draft")).to_be_visible(timeout=LIVE_MS)
    # When the guest edits it in the page
    bubble = guest.locator(".str-chat__message", has=_message(guest, "Firts draft"))
    bubble.hover()
    bubble.get_by_role("button", name="Message actions").click()
    guest.get_by_role("button", name="Edit Message").click()
    box = guest.locator("textarea.str-chat__message-textarea")
    box.fill("First draft")
    box.press("Enter")
    # Then the organizer's page shows the new text, and the app's database holds it
    expect(_message(organizer, "First draft")).to_be_visible(timeout=LIVE_MS)
    wait_for(
        lambda: _texts_in_db(stack, conversation) == ["First draft"],
        "the edit in the app's database",
    )
    # When the app deletes the message (its own ORM session)
    with sessions() as session, session.begin():
        message = session.scalars(
            select(Message).where(Message.conversation_id == conversation)
        ).one()
        session.delete(message)
    # Then both pages show it gone, without a reload
    for page in (organizer, guest):
        expect(_message(page, "First draft")).to_have_count(0, timeout=LIVE_MS)


def test_the_read_receipt_shows_once_the_other_user_has_read(
    stack: Stack, browser: Browser, conversation: uuid.UUID, http: requests.Session
) -> None:
    # Given the organizer's page open and a message of theirs the guest has not seen
    organizer = open_page(browser, stack, stack.cast.organizer, conversation)
    try:
        _type(organizer, "Did you read this?")
        expect(_message(organizer, "Did you read this?")).to_be_visible(timeout=LIVE_MS)
        receipt = organizer.locator("[data-testid=message-status-read-by]")
        expect(receipt).to_have_count(0)
        # When the guest opens the conversation and reads it
        guest = open_page(browser, stack, stack.cast.guest, conversation)
        try:
            expect(_message(guest, "Did you read this?")).to_be_visible(timeout=LIVE_MS)
            # Then the organizer sees the read receipt, live
            expect(receipt).to_have_count(1, timeout=LIVE_MS)
            # And the guest's read reached the app's database (last_read_at)
            wait_for(
                lambda: _last_read(stack, conversation, stack.cast.guest) is not None,
                "the guest's read in the app's database",
            )
        finally:
            guest.context.close()
    finally:
        organizer.context.close()


def _last_read(stack: Stack, conversation: uuid.UUID, user: uuid.UUID) -> datetime | None:
    query = select(ConversationParticipant.last_read_at).where(
        ConversationParticipant.conversation_id == conversation,
        ConversationParticipant.user_id == user,
    )
    with stack.engine.connect() as conn:
        found: datetime | None = conn.scalar(query)
    return found


def test_a_legacy_conversation_opened_in_the_page_migrates_and_shows_its_history(
    stack: Stack, browser: Browser
) -> None:
    # Given a conversation from before go-live, in the database only
    assert not any("legacy" in cid for cid in stack.emulator.state()["channels"])
    # When the guest opens it in the page
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(stack.page_url(stack.cast.guest, stack.cast.legacy))
        # Then it is moved to Stream on demand and shows its history, in order
        texts = page.locator(MESSAGE_TEXT)
        expect(texts).to_have_count(len(OLD_MESSAGES), timeout=30_000)
        assert [t.strip() for t in texts.all_inner_texts()] == list(OLD_MESSAGES)
    finally:
        context.close()
