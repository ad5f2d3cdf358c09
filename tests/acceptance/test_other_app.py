"""The whole product on an application shaped nothing like the reference one.

``tests/apps/other_app`` has its own tables (``accounts`` with integer ids, ``photos``,
``threads``, ``thread_members`` with ``left_at``, ``posts`` with text ids, ``meetups``
and their invites and proposals) and is bound by ``tests.apps.other_app.chat_binding:binding``.
Every process of the product is started as an operator would start it, configured by
environment variables only (``OUTBOX_BINDING`` among them): ``stream-outbox migrate``,
the Procfile under honcho, ``backfill``, ``admin verify|resync|list|replay``, the
dashboard; the app's own FastAPI app (with the chat router) runs under uvicorn.
Real PostgreSQL (a database of this module's own), Redis (a private key prefix and
queue) and the Stream emulator.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from sqlalchemy import Engine, func, inspect, select, update
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import outbox
from stream_outbox.app_hooks.channel_ids import direct_message_id
from stream_outbox.emulator import Emulator
from stream_outbox.worker.operations.migrate import upgrade
from tests.apps.other_app.db import create_tables, engine_for, installed_sessions, plain_sessions
from tests.apps.other_app.models import (
    Account,
    Photo,
    Post,
    Thread,
    ThreadMember,
)
from tests.apps.other_app.seed import Existing, seed_existing
from tests.support.database import empty_database
from tests.support.outbox import newest_row, settled
from tests.support.processes import (
    Run,
    free_port,
    run_to_end,
    script,
    serving,
    started_processes,
    stop,
    wait_for,
)
from tests.support.redis import REDIS_PREFIX, clear_redis
from tests.support.settings import API_SECRET, BIN, ROOT, clean_environ, product_env

pytestmark = pytest.mark.slow

BINDING = "tests.apps.other_app.chat_binding:binding"
OUTBOX_TABLES = set(outbox.metadata.tables)  # the product's own tables


def channel_of(state: dict[str, Any], thread: uuid.UUID) -> dict[str, Any]:
    """The emulator's channel of a thread (its data names the conversation)."""
    found: list[dict[str, Any]] = [
        ch for ch in state["channels"].values() if ch["data"].get("conversation_id") == str(thread)
    ]
    assert len(found) == 1, found
    return found[0]


def texts(state: dict[str, Any], channel: dict[str, Any]) -> dict[str, str]:
    """The live messages of a channel in the emulator's state, by id."""
    messages = state["messages"].get(f"{channel['type']}:{channel['id']}", [])
    return {m["id"]: m["text"] for m in messages if not m.get("deleted_at")}


def target_database(page: str) -> Any:
    """The dashboard row page's "database wants" panel, as data."""
    found = re.search(r'<pre id="target-database">(.*?)</pre>', page, re.S)
    assert found is not None, page
    return json.loads(html.unescape(found.group(1)))


# -- fixtures: a database, Redis keys and a queue of this module's own --------------------


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    """A new, empty database for the other app (no outbox, no reference tables)."""
    with empty_database("stream_outbox_other_app") as url:
        yield url


@pytest.fixture(scope="module")
def app_engine(app_url: str) -> Iterator[Engine]:
    engine = engine_for(app_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def existing(app_engine: Engine) -> Existing:
    create_tables(app_engine)
    return seed_existing(plain_sessions(app_engine))


@pytest.fixture(scope="module")
def stream(emulator: Emulator) -> Emulator:
    emulator.reset()
    return emulator


@pytest.fixture(scope="module")
def env(app_url: str, redis_url: str, stream: Emulator) -> Iterator[dict[str, str]]:
    """The processes' whole configuration: environment variables, ours only."""
    prefix = f"{REDIS_PREFIX}_other"
    yield clean_environ(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        **product_env(
            app_url,
            redis_url,
            stream.base_url,
            prefix=prefix,
            OUTBOX_BINDING=BINDING,
            STREAM_CHAT_TIMEOUT="3",
            OUTBOX_QUEUE=f"other_app_{os.getpid()}_{uuid.uuid4().hex[:6]}",
            OUTBOX_WORKER_THREADS="2",
            OUTBOX_INBOUND_PORT=str(free_port()),
            OUTBOX_RELAY_POLL_INTERVAL="0.2",
            OUTBOX_VISIBILITY_TIMEOUT="30",
            OUTBOX_LOCK_LEASE="30",
            OUTBOX_MAX_RETRIES="3",
            OUTBOX_MIN_BACKOFF_MS="100",
            OUTBOX_MAX_BACKOFF_MS="1000",
        ),
    )
    clear_redis(redis_url, prefix)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty working directory: no .env but the environment's."""
    return tmp_path_factory.mktemp("other_app")


@pytest.fixture(scope="module")
def app_cli(env: dict[str, str], workdir: Path) -> Run:
    """Run ``stream-outbox <args>`` as an operator would."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_to_end(script("stream-outbox", *args), env=env, cwd=workdir, timeout=60)

    return run


@pytest.fixture(scope="module")
def spawn(env: dict[str, str], workdir: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start long-running processes in groups of their own; stopped when the module ends
    (SIGTERM first: honcho starts its processes in sessions of their own, and only it
    can stop them; a SIGKILL would leave them running, orphaned)."""
    with started_processes(env, cwd=workdir) as launch:
        yield launch


# -- the story ----------------------------------------------------------------------------


def test_an_existing_app_goes_live_and_stays_in_step(
    existing: Existing,
    app_engine: Engine,
    app_cli: Run,
    spawn: Callable[..., subprocess.Popen[str]],
    stream: Emulator,
) -> None:
    e = existing
    # Given the other app's tables and rows, written before stream-outbox was installed
    assert OUTBOX_TABLES.isdisjoint(inspect(app_engine).get_table_names())

    # When the outbox tables are created beside them
    migrated = app_cli("migrate")
    # Then they are, and the app's rows are left alone
    assert migrated.returncode == 0, migrated.stderr
    assert set(inspect(app_engine).get_table_names()) >= OUTBOX_TABLES
    with app_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Account)) == 4
        assert conn.scalar(select(func.count()).select_from(Post)) == 3

    # When the Procfile runs and the existing rows are backfilled
    procfile = spawn(*script("honcho", "start", "-f", str(ROOT / "Procfile")))
    backfill = app_cli("backfill", "--json")
    # Then live accounts and threads are enqueued (not the soft-deleted ones)
    assert backfill.returncode == 0, backfill.stderr
    assert json.loads(backfill.stdout) == {"enqueued": {"user": 3, "conversation": 3}}
    wait_for(lambda: settled(app_engine), "the backfill")
    state = stream.state()
    # And Stream holds the accounts: computed name, image from the photos table
    assert state["users"][str(e.ada)]["name"] == "Ada Lovelace"
    assert state["users"][str(e.ada)]["image"] == "https://img.example.org/ada-2.png"
    assert state["users"][str(e.grace)]["name"] == "grace@example.org"
    assert str(e.gone) not in state["users"]
    # And the threads' channels: members without those who left, names from meetups
    dm = channel_of(state, e.dm)
    assert dm["id"] == f"legacy_{e.dm}"
    assert dm["members"] == sorted([str(e.ada), str(e.grace)])
    assert texts(state, dm) == {"msg-post-1": "Hello Grace", "msg-post-2": "Hello Ada"}
    invite = channel_of(state, e.invite_thread)
    assert invite["id"] == f"invitation_{e.invite}"
    assert invite["data"]["name"] == "Book club"
    assert invite["members"] == sorted([str(e.ada), str(e.linus)])
    assert channel_of(state, e.proposal_thread)["id"] == f"proposal_{e.proposal}"
    assert all(
        ch["data"].get("conversation_id") != str(e.deleted_thread)
        for ch in state["channels"].values()
    )

    # When the app, now installed, changes things through its sessions
    live = installed_sessions(app_engine)
    with live() as session, session.begin():
        margaret = Account(email_address="margaret@example.org", name="Margaret Hamilton")
        session.add(margaret)
        session.flush()
        session.add(Photo(account_id=margaret.id, url="https://img.example.org/margaret.png"))
        session.get_one(Account, e.grace).name = "Grace Hopper"
        session.add(Photo(account_id=e.ada, url="https://img.example.org/ada-3.png"))
    with live() as session, session.begin():
        team = Thread()
        session.add(team)
        session.flush()
        session.add_all(
            ThreadMember(thread_id=team.id, account_id=a) for a in (e.ada, e.grace, margaret.id)
        )
        session.add(Post(id="post-live-1", thread_id=team.id, author_id=margaret.id, body="Hi all"))
        session.add(Post(id="post-live-2", thread_id=team.id, author_id=e.ada, body="Oops"))
    with live() as session, session.begin():
        session.get_one(ThreadMember, (team.id, e.grace)).left_at = datetime.now(UTC)
        session.get_one(Account, e.linus).deleted_at = datetime.now(UTC)
        session.get_one(Thread, e.dm).deleted_at = datetime.now(UTC)
        session.get_one(Post, "post-live-2").deleted_at = datetime.now(UTC)
    # Then Stream converges, and verify (which reads the app through the binding) agrees
    wait_for(lambda: settled(app_engine), "the live changes")
    verify = app_cli("admin", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "in step" in verify.stdout
    state = stream.state()
    users = state["users"]
    assert users[str(e.grace)]["name"] == "Grace Hopper"
    assert users[str(e.ada)]["image"] == "https://img.example.org/ada-3.png"
    assert users[str(margaret.id)]["name"] == "Margaret Hamilton"
    assert users[str(margaret.id)]["image"] == "https://img.example.org/margaret.png"
    assert users[str(e.linus)].get("deactivated_at"), "a soft-deleted account is deactivated"
    team_channel = channel_of(state, team.id)
    assert team_channel["members"] == sorted([str(e.ada), str(margaret.id)])
    assert texts(state, team_channel) == {"msg-post-live-1": "Hi all"}
    assert channel_of(state, e.invite_thread)["members"] == [str(e.ada)]
    assert channel_of(state, e.dm)["deleted_at"], "a soft-deleted thread's channel is deleted"

    # When an operator resyncs everything
    resync = app_cli("admin", "resync", "--json")
    # Then every live account and thread is enqueued again, and nothing changes
    assert resync.returncode == 0, resync.stderr
    assert json.loads(resync.stdout) == {"enqueued": {"user": 3, "conversation": 3}}
    wait_for(lambda: settled(app_engine), "the resync")
    assert app_cli("admin", "verify").returncode == 0

    # When a post is longer than Stream takes
    with live() as session, session.begin():
        session.add(Post(id="post-long", thread_id=team.id, author_id=e.ada, body="x" * 5001))
    # Then its row fails at once, for an operator to see
    wait_for(lambda: settled(app_engine, failed=1), "the failure")
    listed = app_cli("admin", "list", "--status", "failed", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)["rows"]
    assert (row["target_kind"], row["target_id"]) == ("message", "post-long")
    assert "code 20" in row["last_error"] and "too long" in row["last_error"], row
    # When the operator shortens it (plain SQL: not captured) and replays the row
    with app_engine.begin() as conn:
        conn.execute(update(Post).where(Post.id == "post-long").values(body="x" * 5000))
    replay = app_cli("admin", "replay", str(row["id"]), "--json")
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["ids"] == [row["id"]]
    # Then it goes through
    wait_for(lambda: settled(app_engine), "the replay")
    assert texts(stream.state(), team_channel)["msg-post-long"] == "x" * 5000

    # When the runner stops the Procfile
    out = stop(procfile)
    # Then both processes stop cleanly
    assert "relay stopped" in out and "worker stopped" in out, out
    assert "inbound stopped" in out, out
    assert "Traceback" not in out, out


def test_the_dashboard_and_the_chat_router_read_the_apps_own_tables(
    existing: Existing,
    app_engine: Engine,
    app_cli: Run,
    spawn: Callable[..., subprocess.Popen[str]],
) -> None:
    e, now = existing, datetime.now(UTC)
    # Given the outbox tables (migrate is a no-op when they are there)
    assert app_cli("migrate").returncode == 0
    # And, written through installed sessions: an account with a photo, in a thread with
    # Ada, which another account left; and a soft-deleted thread
    with installed_sessions(app_engine)() as session, session.begin():
        joan = Account(email_address="joan@example.org", name="Joan Clarke")
        kurt = Account(email_address="kurt@example.org")
        thread, gone = Thread(), Thread(deleted_at=now)
        session.add_all([joan, kurt, thread, gone])
        session.flush()
        session.add(Photo(account_id=joan.id, url="https://img.example.org/joan.png"))
        session.add_all(
            [
                ThreadMember(thread_id=thread.id, account_id=joan.id),
                ThreadMember(thread_id=thread.id, account_id=e.ada),
                ThreadMember(thread_id=thread.id, account_id=kurt.id, left_at=now),
                ThreadMember(thread_id=gone.id, account_id=joan.id),
            ]
        )
    rows = {
        kind: newest_row(app_engine, kind, target)
        for kind, target in (("user", joan.id), ("conversation", thread.id))
    }

    # When the dashboard runs (OUTBOX_DASHBOARD_TOKEN set) and an operator opens the rows
    token = uuid.uuid4().hex
    port = free_port()
    dashboard = spawn(
        *script("stream-outbox", "dashboard", "--port", str(port)), OUTBOX_DASHBOARD_TOKEN=token
    )
    base = f"http://127.0.0.1:{port}"
    serving(dashboard, f"{base}/login")
    bearer = {"Authorization": f"Bearer {token}"}
    user_page = requests.get(f"{base}/rows/{rows['user']}", headers=bearer, timeout=10)
    thread_page = requests.get(f"{base}/rows/{rows['conversation']}", headers=bearer, timeout=10)
    # Then each shows what the app's database wants, read through the binding
    assert user_page.status_code == 200, user_page.text
    wants = target_database(user_page.text)
    assert wants["name"] == "Joan Clarke"
    assert wants["image"] == "https://img.example.org/joan.png"
    assert thread_page.status_code == 200, thread_page.text
    assert sorted(target_database(thread_page.text)["members"]) == sorted(
        [str(joan.id), str(e.ada)]
    )
    # And without the token nothing is shown
    assert requests.get(f"{base}/rows/{rows['user']}", timeout=10).status_code == 401

    # When the app's own web app runs under uvicorn, with the chat router on its binding
    port = free_port()
    web = spawn(
        sys.executable,
        *("-m", "uvicorn", "--factory", "tests.apps.other_app.web:create_app"),
        *("--host", "127.0.0.1", "--port", str(port)),
    )
    base = f"http://127.0.0.1:{port}"
    serving(web, f"{base}/health")

    def get(path: str, account: int | None) -> requests.Response:
        headers = {} if account is None else {"X-User-Id": str(account)}
        return requests.get(f"{base}{path}", headers=headers, timeout=10)

    # Then an account gets a Stream token for its own id
    answer = get("/chat/token", joan.id)
    assert answer.status_code == 200, answer.text
    assert answer.json()["user_id"] == str(joan.id)
    claims = jwt.decode(answer.json()["token"], API_SECRET, algorithms=["HS256"])
    assert claims["user_id"] == str(joan.id)
    assert get("/chat/token", None).status_code == 401
    # And a member finds the thread's channel, predicted from its live members
    path = f"/chat/conversations/{thread.id}/channel"
    answer = get(path, joan.id)
    assert answer.status_code == 200, answer.text
    channel_id = direct_message_id([str(joan.id), str(e.ada)])
    assert answer.json()["cid"] == f"messaging:{channel_id}"
    assert answer.json()["conversation_id"] == str(thread.id)
    # And those who are not members, or left, are refused; a deleted thread is not found
    assert get(path, e.grace).status_code == 403
    assert get(path, kurt.id).status_code == 403
    assert get(f"/chat/conversations/{gone.id}/channel", joan.id).status_code == 404
    assert get("/chat/conversations/not-a-uuid/channel", joan.id).status_code == 404
    for process in (dashboard, web):
        stop(process)


# -- soft deletes undone ------------------------------------------------------------------


@pytest.fixture(scope="module")
def procfile_running(
    existing: Existing, app_cli: Run, spawn: Callable[..., subprocess.Popen[str]]
) -> subprocess.Popen[str]:
    """The migrated outbox and the Procfile running, for the tests below."""
    assert app_cli("migrate").returncode == 0
    return spawn(*script("honcho", "start", "-f", str(ROOT / "Procfile")))


def deleted_account_in_a_thread(
    engine: Engine, existing: Existing, stream: Emulator
) -> tuple[sessionmaker[Session], int, uuid.UUID]:
    """An account in a thread with Ada and Grace, synced, then soft-deleted and synced."""
    live = installed_sessions(engine)
    with live() as session, session.begin():
        account = Account(email_address=f"{uuid.uuid4().hex[:8]}@example.org", name="Rosalind")
        thread = Thread()
        session.add_all([account, thread])
        session.flush()
        for member in (account.id, existing.ada, existing.grace):
            session.add(ThreadMember(thread_id=thread.id, account_id=member))
    wait_for(lambda: settled(engine), "the account")
    with live() as session, session.begin():
        session.get_one(Account, account.id).deleted_at = datetime.now(UTC)
    wait_for(lambda: settled(engine), "the deletion")
    state = stream.state()
    assert state["users"][str(account.id)].get("deactivated_at")
    assert str(account.id) not in channel_of(state, thread.id)["members"]
    return live, account.id, thread.id


def restore(live: sessionmaker[Session], engine: Engine, model: type[Any], key: object) -> None:
    with live() as session, session.begin():
        session.get_one(model, key).deleted_at = None
    wait_for(lambda: settled(engine), "the restore")


def test_an_account_restored_from_its_soft_delete_is_active_in_stream(
    existing: Existing,
    app_engine: Engine,
    procfile_running: subprocess.Popen[str],
    app_cli: Run,
    stream: Emulator,
) -> None:
    # Given a soft-deleted account, deactivated in Stream
    live, account, _ = deleted_account_in_a_thread(app_engine, existing, stream)
    # When the app restores it (and an operator resyncs, to be sure)
    restore(live, app_engine, Account, account)
    assert app_cli("admin", "resync", "--kind", "user").returncode == 0
    wait_for(lambda: settled(app_engine), "the resync")
    # Then Stream holds it active again
    assert not stream.state()["users"][str(account)].get("deactivated_at")
    assert app_cli("admin", "verify", "--kind", "user").returncode == 0


def test_an_account_restored_from_its_soft_delete_is_back_in_its_channels(
    existing: Existing,
    app_engine: Engine,
    procfile_running: subprocess.Popen[str],
    stream: Emulator,
) -> None:
    # Given a soft-deleted account, out of its thread's channel
    live, account, thread = deleted_account_in_a_thread(app_engine, existing, stream)
    # When the app restores it
    restore(live, app_engine, Account, account)
    # Then it is a member of its thread's channel again
    assert str(account) in channel_of(stream.state(), thread)["members"]


def test_a_thread_restored_from_its_soft_delete_has_its_posts_in_stream(
    existing: Existing,
    app_engine: Engine,
    procfile_running: subprocess.Popen[str],
    stream: Emulator,
) -> None:
    # Given a thread with a post, synced, then soft-deleted: its channel is deleted
    live = installed_sessions(app_engine)
    with live() as session, session.begin():
        thread = Thread()
        session.add(thread)
        session.flush()
        for account in (existing.ada, existing.grace):
            session.add(ThreadMember(thread_id=thread.id, account_id=account))
        session.add(Post(id="post-kept", thread_id=thread.id, author_id=existing.ada, body="Kept"))
    wait_for(lambda: settled(app_engine), "the thread")
    with live() as session, session.begin():
        session.get_one(Thread, thread.id).deleted_at = datetime.now(UTC)
    wait_for(lambda: settled(app_engine), "the deletion")
    assert channel_of(stream.state(), thread.id)["deleted_at"]
    # When the app restores it
    restore(live, app_engine, Thread, thread.id)
    # Then its channel is back, with its members and its live post, sent again under the
    # id of the channel's second generation (Stream refuses an id it held, even deleted)
    wait_for(lambda: bool(texts(stream.state(), channel_of(stream.state(), thread.id))), "post")
    state = stream.state()
    channel = channel_of(state, thread.id)
    assert not channel["deleted_at"]
    assert channel["members"] == sorted([str(existing.ada), str(existing.grace)])
    assert texts(state, channel) == {"msg1-post-kept": "Kept"}
    # and a later edit reaches that message
    with live() as session, session.begin():
        session.get_one(Post, "post-kept").body = "Kept, edited"
    wait_for(lambda: settled(app_engine), "the edit")
    assert texts(stream.state(), channel) == {"msg1-post-kept": "Kept, edited"}


# -- capture through the binding, in-process --------------------------------------------


@pytest.fixture(scope="module")
def capture_engine(existing: Existing, app_url: str, app_engine: Engine) -> Engine:
    """The app's engine, its outbox tables there (in-process migrate, a no-op if they are)."""
    upgrade(app_url)
    return app_engine


def user_rows(engine: Engine, account: int) -> int:
    query = select(func.count()).where(
        outbox.c.target_kind == "user", outbox.c.target_id == str(account)
    )
    with engine.connect() as conn:
        return int(conn.scalar(query) or 0)


def test_a_column_stream_ignores_changes_without_a_row(capture_engine: Engine) -> None:
    # Given an account, written through installed sessions (its name and image computed:
    # the account has no full_name or avatar_url attribute for capture to watch)
    factory = installed_sessions(capture_engine)
    with factory() as session, session.begin():
        account = Account(email_address=f"{uuid.uuid4().hex}@example.org")
        session.add(account)
    # When only a column Stream does not read changes
    with factory() as session, session.begin():
        session.get_one(Account, account.id).last_seen_at = datetime.now(UTC)
    # Then the commit goes through, and writes no row
    assert user_rows(capture_engine, account.id) == 1


def test_an_orm_bulk_rename_of_accounts_is_captured(capture_engine: Engine) -> None:
    # Given an account, written through installed sessions
    factory = installed_sessions(capture_engine)
    with factory() as session, session.begin():
        account = Account(email_address=f"{uuid.uuid4().hex}@example.org")
        session.add(account)
    # When an ORM bulk update renames it
    with factory() as session, session.begin():
        session.execute(update(Account).where(Account.id == account.id).values(name="Renamed"))
    # Then the rename writes its row
    assert user_rows(capture_engine, account.id) == 2


def test_deleting_a_photo_reconciles_its_account_only(capture_engine: Engine) -> None:
    # Given an account with a photo, in a thread
    factory = installed_sessions(capture_engine)
    with factory() as session, session.begin():
        account, thread = Account(email_address=f"{uuid.uuid4().hex}@example.org"), Thread()
        session.add_all([account, thread])
        session.flush()
        photo = Photo(account_id=account.id, url="https://img.example.org/old.png")
        session.add_all([photo, ThreadMember(thread_id=thread.id, account_id=account.id)])
    with capture_engine.connect() as conn:
        before = conn.scalar(select(func.max(outbox.c.id)))
    # When the photo is deleted
    with factory() as session, session.begin():
        session.delete(session.get_one(Photo, photo.id))
    # Then one row reconciles the account, as an update; its thread is not touched
    query = select(outbox.c.target_kind, outbox.c.target_id, outbox.c.event).where(
        outbox.c.id > before
    )
    with capture_engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(query)]
    assert rows == [("user", str(account.id), "update")]
