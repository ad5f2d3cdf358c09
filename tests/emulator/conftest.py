"""Fixtures of the emulator's tests: real SDK clients against the suite's ``emu``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from stream_chat import StreamChat

from stream_outbox.emulator import Emulator
from tests.support.settings import API_KEY, API_SECRET
from tests.support.user_client import UserClient
from tests.support.webhook_receiver import WebhookReceiver


@pytest.fixture
def make_client(emu: Emulator) -> Iterator[Callable[..., StreamChat]]:
    """Build SDK clients against the emulator; their sessions are closed afterwards."""
    clients: list[StreamChat] = []

    def make(api_key: str = API_KEY, api_secret: str = API_SECRET, **options: Any) -> StreamChat:
        client = StreamChat(api_key, api_secret, base_url=emu.base_url, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.session.close()


@pytest.fixture
def client(make_client: Callable[..., StreamChat]) -> StreamChat:
    """A correctly configured SDK client."""
    return make_client()


@pytest.fixture
def http(emu: Emulator) -> Iterator[requests.Session]:
    """A plain HTTP session, for the admin API and hand-made requests."""
    session = requests.Session()
    yield session
    session.close()


@pytest.fixture
def users(client: StreamChat) -> list[str]:
    """Five existing users: alice, bob, carol, dave, erin."""
    ids = ["alice", "bob", "carol", "dave", "erin"]
    client.upsert_users([{"id": uid, "name": uid.title()} for uid in ids])
    return ids


@pytest.fixture
def channel(client: StreamChat, users: list[str]) -> Any:
    """``messaging:general`` created by alice with alice and bob as members."""
    ch = client.channel("messaging", "general", {"name": "General", "members": ["alice", "bob"]})
    ch.create("alice")
    return ch


@pytest.fixture
def fast(emu: Emulator) -> Emulator:
    """The emulator with imports moving to their next state at once."""
    emu.set_import_options(state_seconds=0)
    return emu


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """An HTTP endpoint recording the webhooks it receives."""
    with WebhookReceiver() as stub:
        yield stub


@pytest.fixture
def hooked(client: StreamChat, receiver: WebhookReceiver, emu: Emulator) -> WebhookReceiver:
    """The receiver subscribed to every event (``event_types`` empty), with short retries."""
    emu.set_webhook_options(timeout=1.0, backoff=0.05)
    hook = {"enabled": True, "hook_type": "webhook", "webhook_url": receiver.url}
    client.update_app_settings(event_hooks=[{**hook, "event_types": []}])
    return receiver


@pytest.fixture
def as_user(
    emu: Emulator, client: StreamChat, http: requests.Session
) -> Callable[[str], UserClient]:
    """Client-side calls of a user, with the token the app's ``/chat/token`` hands out."""

    def make(user_id: str) -> UserClient:
        token = client.create_token(user_id)
        return UserClient(emu.base_url, emu.api_key, user_id, token, http)

    return make
