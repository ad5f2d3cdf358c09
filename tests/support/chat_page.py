"""The chat page (``examples/frontend``) for the browser tests and the latency benchmark:
checks it is built, opens it as a user in a browser context, and writes into the
reference app's database the way the app does (a captured ORM session)."""

from __future__ import annotations

import uuid

import requests
from playwright.sync_api import Browser, Page
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from examples.chat_app.page import FRONTEND, FRONTEND_DIST
from examples.chat_app.stack import Stack
from stream_outbox.app_hooks import install
from stream_outbox.app_hooks.lookup import channel_for_conversation
from stream_outbox.app_hooks.reference import Conversation, ConversationParticipant
from tests.support.processes import wait_for

BUILD = "cd examples/frontend && npm ci && npm run build (./dev test does it)"
MESSAGE_TEXT = ".str-chat__message-text"
# A message's text as shown: the text element's last child (before it, a visually hidden
# "Message from <name>," for screen readers)
SHOWN_TEXT = f"{MESSAGE_TEXT} > :last-child"
COMPOSER = "textarea.str-chat__message-textarea"


def missing_build() -> str | None:
    """What to run when the page or its node modules are not built, else ``None``."""
    if not (FRONTEND / "node_modules" / "stream-chat").is_dir():
        return f"examples/frontend has no node_modules: run {BUILD}"
    if not (FRONTEND_DIST / "index.html").is_file():
        return f"examples/frontend/dist is not built: run {BUILD}"
    return None


def captured(engine: Engine) -> sessionmaker[Session]:
    """Sessions as the app makes them: capture installed (its writes reach Stream)."""
    sessions = sessionmaker(engine, expire_on_commit=False)
    install(sessions)
    return sessions


def new_conversation(stack: Stack, sessions: sessionmaker[Session]) -> uuid.UUID:
    """A new conversation of the stack's two users, once its channel is in Stream."""
    with sessions() as session, session.begin():
        conversation = Conversation()
        session.add(conversation)
        session.flush()
        for user in (stack.cast.organizer, stack.cast.guest):
            session.add(ConversationParticipant(conversation_id=conversation.id, user_id=user))
        made = conversation.id
    wait_for(lambda: channel_cid(stack, made) is not None, "the new conversation in Stream")
    return made


def channel_cid(stack: Stack, conversation: uuid.UUID) -> str | None:
    """The conversation's channel as ``type:id`` once it is in Stream, else ``None``."""
    with stack.engine.connect() as conn:
        found = channel_for_conversation(conn, str(conversation))
    return found.cid if found is not None and found.synced else None


def open_page(
    browser: Browser,
    stack: Stack,
    user: uuid.UUID,
    conversation: uuid.UUID,
    init_script: str | None = None,
) -> Page:
    """The page of ``conversation`` as ``user`` in a browser context of its own, once its
    channel is shown (the composer is there: the channel is watched). ``init_script`` runs
    in the page before its own scripts."""
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    if init_script is not None:
        context.add_init_script(init_script)
    page = context.new_page()
    page.goto(stack.page_url(user, conversation))
    page.locator(COMPOSER).wait_for(timeout=30_000)
    return page


def post_legacy(
    stack: Stack, http: requests.Session, user: uuid.UUID, conversation: uuid.UUID, text: str
) -> dict[str, object]:
    """POST a message through the legacy endpoint (as the old page does); its answer."""
    answer = http.post(
        f"{stack.app_url}/chat/conversations/{conversation}/messages",
        json={"content": text},
        headers={"X-Demo-User": str(user)},
        timeout=10,
    )
    answer.raise_for_status()
    posted: dict[str, object] = answer.json()
    return posted


def shown_texts(page: Page) -> list[str]:
    """The texts of the messages the page shows, top to bottom."""
    return [text.strip() for text in page.locator(SHOWN_TEXT).all_inner_texts()]
