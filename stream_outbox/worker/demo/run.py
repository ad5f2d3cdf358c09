"""``stream-outbox demo``: the whole pipeline on one machine, on embedded defaults.

The Stream emulator runs in this process; the reference app plays a story
(:mod:`stream_outbox.worker.demo.story`) through sessions with capture installed; the real relay
and a Dramatiq worker in this process drain the outbox into the emulator after each
chapter; then what Stream holds is set beside what the database says
(:mod:`worker.verify.compare`), ending with a verdict. Nothing outside the demo is touched:

* **PostgreSQL**, when ``DATABASE_URL`` names one that answers within 2 s: the demo
  creates a database of its own on that server (``stream_outbox_demo_<hex>``),
  migrates it and drops it at the end (``WITH (FORCE)`` on PostgreSQL 13+). A
  database rather than a schema: the app's schema, search path and the outbox's
  trigger function stay untouched, and one ``DROP DATABASE`` leaves nothing behind.
  Without ``DATABASE_URL``, when it does not answer, or when the server refuses to
  create a database, SQLite in a temporary file stands in (``--postgres`` insists on
  PostgreSQL, ``--sqlite`` skips it).
* **Redis**, when ``REDIS_URL`` answers: a ``RedisBroker`` under a key prefix of the
  demo's own (``OUTBOX_REDIS_PREFIX`` set to ``stream_outbox_demo_<hex>``), with the
  locks, rate budget and known-users set under it too; its keys are deleted at the
  end. Otherwise Dramatiq's ``StubBroker`` and ``fakeredis`` stand in.
"""

from __future__ import annotations

import logging
import secrets
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dramatiq
import fakeredis
from dramatiq.brokers.stub import StubBroker
from redis import Redis
from redis.exceptions import RedisError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from stream_outbox.app_hooks import install
from stream_outbox.app_hooks.reference import REFERENCE_BINDING, Base
from stream_outbox.emulator import Emulator
from stream_outbox.worker import runtime
from stream_outbox.worker.demo.scratch_db import scratch_database
from stream_outbox.worker.demo.story import CONVERSATIONS, STORY, Cast
from stream_outbox.worker.errors import ConfigurationError, StreamOutboxError
from stream_outbox.worker.operations.migrate import upgrade
from stream_outbox.worker.pipeline.broker import build_broker, configure_middleware, declare_actors
from stream_outbox.worker.pipeline.relay import Relay
from stream_outbox.worker.runtime import delete_prefixed_keys
from stream_outbox.worker.settings import Settings, load_settings
from stream_outbox.worker.store.repository import OutboxRepository
from stream_outbox.worker.verify.compare import (
    ChannelView,
    Difference,
    State,
    UserView,
    compare,
)
from stream_outbox.worker.verify.readers import gather
from stream_outbox.worker.verify.readers import held_from_snapshot as from_snapshot

__all__ = ["run_demo"]

API_KEY = "stream-outbox-demo"
DRAIN_TIMEOUT = 15.0  # seconds per chapter


# -- embedded defaults -------------------------------------------------------------------


def _configured_database() -> str | None:
    """DATABASE_URL from the settings, None when unset (the demo does not need one)."""
    try:
        return load_settings().database_url
    except ConfigurationError as exc:
        if str(exc) != "DATABASE_URL is not set":
            raise
        return None


def _database(stack: ExitStack, configured: str | None, want_pg: bool | None) -> tuple[str, str]:
    """The demo's database URL and one line saying which it is."""
    if want_pg is not False and configured and configured.startswith("postgresql"):
        try:
            return _postgres_database(stack, configured)
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            if want_pg:
                raise StreamOutboxError(f"PostgreSQL (DATABASE_URL) failed: {reason}") from None
            why = f"PostgreSQL at {_server(configured)} failed ({reason})"
    elif want_pg:
        raise StreamOutboxError("--postgres needs DATABASE_URL naming a PostgreSQL server")
    elif want_pg is False:
        why = "--sqlite"
    else:
        why = "DATABASE_URL is not set" if configured is None else "DATABASE_URL is not PostgreSQL"
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="stream-outbox-demo-"))
    path = Path(folder) / "demo.sqlite3"
    return f"sqlite:///{path}", f"database  {why}: SQLite in a temporary file, {path}"


def _postgres_database(stack: ExitStack, server_url: str) -> tuple[str, str]:
    url = stack.enter_context(scratch_database(server_url, "stream_outbox_demo", connect_timeout=2))
    name = make_url(url).database
    return url, f"database  PostgreSQL {_server(server_url)}, a database of its own: {name}"


def _server(url: str) -> str:
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


def _engine(url: str) -> Engine:
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    # Foreign keys as on PostgreSQL (deletes cascade); WAL so the worker's threads and
    # the relay read while one writes; wait for the write lock rather than fail.
    cursor = dbapi_connection.cursor()
    for pragma in ("foreign_keys=ON", "journal_mode=WAL", "busy_timeout=10000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _redis(stack: ExitStack, settings: Settings) -> tuple[Any, Redis, str]:
    """The broker, a Redis client for locks and known users, and one line saying which."""
    probe = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        probe.ping()
    except (RedisError, OSError) as exc:
        stub = StubBroker()
        configure_middleware(stub, settings)
        stack.callback(stub.close)
        why = f"Redis at {_redact(settings.redis_url)} does not answer ({type(exc).__name__})"
        fake = fakeredis.FakeRedis()
        return stub, fake, f"broker    {why}: an in-process broker and fakeredis"
    finally:
        probe.close()
    client = Redis.from_url(settings.redis_url)
    broker = build_broker(settings)  # under the prefix, as the locks, budget and known users

    def clean() -> None:
        delete_prefixed_keys(client, settings.redis_prefix)
        client.close()

    stack.callback(clean)
    stack.callback(broker.close)
    where = f"Redis {_redact(settings.redis_url)}"
    return broker, client, f"broker    {where}, a key prefix of its own: {settings.redis_prefix}"


def _redact(url: str) -> str:
    password = urlsplit(url).password
    return url.replace(f":{password}@", ":***@") if password else url


# -- the pipeline ------------------------------------------------------------------------


@dataclass
class _Pipeline:
    engine: Engine
    repo: OutboxRepository
    relay: Relay
    emulator: Emulator
    settings: Settings


def _start(stack: ExitStack, console: Console, want_pg: bool | None) -> _Pipeline:
    configured = _configured_database()
    secret = secrets.token_hex(24)
    emulator = stack.enter_context(Emulator(api_key=API_KEY, api_secret=secret))
    console.print(f"Stream    the emulator at {emulator.base_url}", soft_wrap=True)
    url, line = _database(stack, configured, want_pg)
    console.print(escape(line), soft_wrap=True)
    settings = load_settings(  # the rest (rate limits, policies, REDIS_URL) from the settings
        database_url=url,
        getstream_api_secret=secret,
        getstream_api_key=API_KEY,
        stream_chat_url=emulator.base_url,
        stream_timeout=2.0,
        redis_prefix=f"stream_outbox_demo_{uuid.uuid4().hex[:8]}",
        queue_name="stream_outbox_demo",
        max_retries=3,
        min_backoff_ms=50,
        max_backoff_ms=1000,
    )
    broker, redis, line = _redis(stack, settings)
    console.print(escape(line), soft_wrap=True)
    upgrade(url)
    engine = _engine(url)
    stack.callback(engine.dispose)
    Base.metadata.create_all(engine)
    return _Pipeline(engine, *_workers(stack, settings, engine, broker, redis), emulator, settings)


def _workers(
    stack: ExitStack, settings: Settings, engine: Engine, broker: Any, redis: Redis
) -> tuple[OutboxRepository, Relay]:
    dramatiq.set_broker(broker)
    actor = declare_actors(broker, settings)
    rt = runtime.Runtime.from_settings(settings, REFERENCE_BINDING, engine=engine, redis=redis)
    runtime.install(rt)
    stack.callback(runtime.reset)
    threads = 2 if engine.dialect.name == "sqlite" else 4
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=20)
    worker.start()
    stack.callback(worker.stop, 5000)
    return rt.repo, Relay(rt.repo, actor, poll_interval=0.05, visibility_timeout=60)


def _drain(pipe: _Pipeline, progress: Progress, task: Any, total: int) -> bool:
    """Dispatch and wait until no row is pending or dispatched; False after the timeout."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while True:
        pipe.relay.drain()
        stats = pipe.repo.stats()
        progress.update(task, completed=total - stats.pending - stats.dispatched)
        if stats.pending == 0 and stats.dispatched == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _play(pipe: _Pipeline, console: Console, cast: Cast) -> bool:
    """Play the story chapter by chapter, draining after each; False if a drain timed out."""
    factory = sessionmaker(pipe.engine, expire_on_commit=False)
    install(factory)
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn())
    progress = Progress(*columns, TimeElapsedColumn(), console=console)
    story = progress.add_task("story chapters", total=len(STORY))
    rows = progress.add_task("outbox rows synced", total=0)
    total, drained = 0, True
    with progress:
        for number, (title, chapter) in enumerate(STORY, 1):
            started = time.perf_counter()
            with factory() as session, session.begin():
                chapter(session, cast)
            written = pipe.repo.stats().pending
            total += written
            progress.update(rows, total=total)
            drained = _drain(pipe, progress, rows, total) and drained
            progress.advance(story)
            took = time.perf_counter() - started
            rows_written = f"{written} outbox row{'' if written == 1 else 's'}"
            console.print(f"  {number}. {title} ({rows_written}, {took:.2f} s)", soft_wrap=True)
    return drained


# -- the report --------------------------------------------------------------------------


def _user_cell(view: UserView | None) -> str:
    if view is None:
        return "-"
    return f"{view.name} ({view.image.rsplit('/', 1)[-1]})" if view.image else view.name


def _channel_cell(view: ChannelView | None, names: dict[str, str]) -> str:
    if view is None:
        return "-"
    if view.deleted:
        return "deleted"
    members = ", ".join(sorted(names.get(m, m[:8]) for m in view.members)) or "no members"
    lines = [str(view.data.get("name") or "(no name)"), members]
    if view.messages is not None:
        lines.append(f"{view.messages} message{'s' if view.messages != 1 else ''}")
    return escape("\n".join(lines))


def _mark(differs: bool) -> str:
    return "[red]differs[/]" if differs else "[green]ok[/]"


def _tables(desired: State, held: State, differences: list[Difference]) -> list[Table]:
    odd = {(d.kind, d.id) for d in differences}
    users = Table("user", "database", "Stream", "", title="Users", title_justify="left")
    by_name = sorted({*desired.users, *held.users}, key=lambda u: _user_cell(desired.users.get(u)))
    for uid in by_name:
        cells = (_user_cell(desired.users.get(uid)), _user_cell(held.users.get(uid)))
        users.add_row(uid[:8], *map(escape, cells), _mark(("user", uid) in odd))
    names = {uid: user.name.split()[0] for uid, user in desired.users.items()}
    channels = Table("channel", "database", "Stream", "", title="Channels", title_justify="left")
    for cid in sorted({*desired.channels, *held.channels}):
        prefix, _, rest = cid.partition(":")[2].partition("_")
        label = f"{prefix}_{rest[:8]}" if rest else prefix
        want = _channel_cell(desired.channels.get(cid), names)
        have = _channel_cell(held.channels.get(cid), names)
        channels.add_row(escape(label), want, have, _mark(("channel", cid) in odd))
    return [users, channels]


def _verdict(desired: State, problems: list[tuple[str, str]], seconds: float) -> str:
    if problems:
        shown = "; ".join(short for short, _ in problems[:4]) + ("; ..." * (len(problems) > 4))
        count = f"{len(problems)} difference{'s' * (len(problems) != 1)}"
        return f"[bold red]Verdict: out of step, {count}: {escape(shown)}[/]"
    live = [c for c in desired.channels.values() if not c.deleted]
    messages = sum(c.messages or 0 for c in live)
    held = (
        f"{len(desired.users)} users, {len(live)} channels, "
        f"{len(desired.channels) - len(live)} deleted, {messages} messages"
    )
    return f"[bold green]Verdict: in step ({held}) in {seconds:.1f} s[/]"


def _report(pipe: _Pipeline, console: Console, cast: Cast, drained: bool, started: float) -> bool:
    desired, held = gather(
        pipe.engine,
        REFERENCE_BINDING,
        pipe.repo,
        lambda _: from_snapshot(pipe.emulator.state()),
        gone=[str(cast[key]) for key in CONVERSATIONS if key in cast],
        messages=pipe.settings.mirror_messages,
    )
    differences = compare(desired=desired, held=held)
    for table in _tables(desired, held, differences):
        console.print(table)
    problems = [(f"{d.kind} {d.id[:8]} {d.what}", str(d)) for d in differences]
    stats = pipe.repo.stats()
    if stats.failed:
        problems.append((f"{stats.failed} failed outbox row(s)",) * 2)
    if not drained:
        problems.append((f"outbox not drained in {DRAIN_TIMEOUT:.0f} s",) * 2)
    for _, problem in problems:
        console.print(f"  [red]{escape(problem)}[/]", soft_wrap=True)
    console.print(_verdict(desired, problems, time.monotonic() - started), soft_wrap=True)
    return not problems


def run_demo(want_postgres: bool | None = None, console: Console | None = None) -> bool:
    """Run the demo; True when Stream ends in step with the database.

    ``want_postgres``: None picks PostgreSQL when DATABASE_URL answers, else SQLite;
    True insists on PostgreSQL; False uses SQLite.
    """
    console = console or Console(highlight=False)
    started = time.monotonic()
    logging.getLogger().setLevel(logging.WARNING)  # the actors' INFO lines would drown it
    console.print("[bold]stream-outbox demo[/]: the reference app's story, captured in the outbox,")
    console.print("relayed to the actors, which keep a local Stream in step with the database.")
    cast: Cast = {}
    with ExitStack() as stack:
        pipe = _start(stack, console, want_postgres)
        drained = _play(pipe, console, cast)
        return _report(pipe, console, cast, drained, started)
