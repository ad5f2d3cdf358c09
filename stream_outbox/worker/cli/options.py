"""What the commands share: ``--json`` and ``--actor``, the database engine, the console,
and progress bars by kind.

Every command that prints takes ``--json`` for scripts; every command that changes
rows names an actor in its audit entry (``--actor``, default: the OS user).
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from sqlalchemy import Connection, Engine, create_engine

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import Binding
from stream_outbox.worker.operations.resync import check_resync_kinds, resync
from stream_outbox.worker.settings import Settings

__all__ = ["ACTOR", "JSON", "Bars", "connected", "console", "emit", "run_with_progress"]

JSON = typer.Option(False, "--json", help="Print JSON for scripts.")
ACTOR = typer.Option(
    default_factory=getpass.getuser,
    show_default=False,
    help="Who does this, for the audit (default: the OS user).",
)

console = Console()


def emit(data: Any) -> None:
    """Print ``data`` as JSON (times and other values as their text)."""
    typer.echo(json.dumps(data, indent=2, default=str))


@contextmanager
def connected(settings: Settings) -> Iterator[Engine]:
    """An engine on ``DATABASE_URL`` for one command, disposed of when it ends."""
    engine = create_engine(settings.database_url, pool_pre_ping=True)
    try:
        yield engine
    finally:
        engine.dispose()


class RateColumn(ProgressColumn):
    """Items per second of a task."""

    def render(self, task: Task) -> Text:
        """The task's speed, or a dash before there is one."""
        speed = task.finished_speed or task.speed
        return Text("-/s" if speed is None else f"{speed:,.0f}/s")


class Bars:
    """One progress bar per kind of item (rate and time left); silent when not enabled."""

    def __init__(self, *, enabled: bool, on: Console = console) -> None:
        self._progress = Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=on,
            disable=not enabled,
        )
        self._tasks: dict[str, TaskID] = {}

    def _task(self, kind: str, total: int | None) -> TaskID:
        task = self._tasks.get(kind)
        if task is None:
            task = self._tasks[kind] = self._progress.add_task(kind, total=total)
        return task

    def update(self, kind: str, *, done: int, total: int | None) -> None:
        """``done`` items of ``kind`` so far (of ``total`` when known)."""
        self._progress.update(self._task(kind, total), completed=done, total=total)

    def advance(self, kind: str, count: int) -> None:
        """``count`` more items of ``kind`` done."""
        self._progress.advance(self._task(kind, None), count)

    def __enter__(self) -> Bars:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


def run_with_progress(
    engine: Engine,
    binding: Binding,
    *,
    kinds: list[str],
    event: str,
    payload: dict[str, Any],
    actor: str,
    resume: bool,
    quiet: bool,
    select_ids: Callable[[Connection, str, str | None, int], list[str]] | None = None,
    totals: dict[str, int] | None = None,
) -> dict[str, int]:
    """Run :func:`resync` with a progress bar per kind (rate and time left)."""
    check_resync_kinds(kinds)
    if totals is None:
        with engine.connect() as conn:
            totals = {kind: reads.count(binding, conn, kind) for kind in kinds}
    with Bars(enabled=not quiet) as bars:
        for kind in kinds:
            bars.update(kind, done=0, total=totals[kind])
        return resync(
            engine,
            binding,
            actor=actor,
            kinds=kinds,
            event=event,
            payload=payload,
            resume=resume,
            progress=bars.advance,
            select_ids=select_ids,
        )
