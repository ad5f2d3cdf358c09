"""``stream-outbox admin``: see, replay and repair the outbox from the command line.

Every command takes ``--json`` for scripts. Commands that change rows write an
audit row naming the actor (``--actor``, default: the OS user).
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
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text
from sqlalchemy import Connection, Engine, create_engine

from stream_outbox.app_hooks.binding import Binding
from stream_outbox.worker.app_binding import resolve_binding
from stream_outbox.worker.cli.errors import errors
from stream_outbox.worker.errors import AdminError
from stream_outbox.worker.operations.purge import purge
from stream_outbox.worker.operations.replay import replay
from stream_outbox.worker.operations.resync import check_resync_kinds, resync
from stream_outbox.worker.operations.rows import Filters, RowView, count_rows, get_row, list_rows
from stream_outbox.worker.operations.stats import read_stats, stream_call_figures
from stream_outbox.worker.operations.times import parse_duration
from stream_outbox.worker.settings import Settings, load_settings
from stream_outbox.worker.store.audit import naming_row

__all__ = ["app"]

app = typer.Typer(help="See, replay and repair the outbox.", no_args_is_help=True)
console = Console()

JSON = typer.Option(False, "--json", help="Print JSON for scripts.")
ACTOR = typer.Option(None, "--actor", help="Who does this, for the audit (default: OS user).")


@contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    engine = create_engine(settings.database_url, pool_pre_ping=True)
    try:
        yield engine
    finally:
        engine.dispose()


def _binding(engine: Engine, settings: Settings) -> Binding:
    """The application's binding (``OUTBOX_BINDING``), checked against the database."""
    return resolve_binding(engine, settings.binding)


def _actor(actor: str | None) -> str:
    return actor or getpass.getuser()


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _filters(**raw: str | None) -> Filters:
    return Filters.parse(**raw)


@app.command("stats")
def show_stats(
    metrics_url: list[str] = typer.Option(
        None,
        help="A worker's metrics URL for Stream call counts (repeat; env OUTBOX_METRICS_URLS).",
    ),
    series: bool = typer.Option(
        False,
        "--series",
        help="Also rows settled per minute (done, failed) and the oldest pending age, "
        "for the last hour and the last day.",
    ),
    as_json: bool = JSON,
) -> None:
    """Counts by status and target kind, lag, failures in the last hour, Stream calls and 429s."""
    from stream_outbox.worker.operations.series import WINDOWS, read_series

    settings = load_settings()
    with _engine(settings) as engine:
        figures = read_stats(engine)
        if series:
            with engine.connect() as conn:
                figures["series"] = {w: read_series(conn, w).as_json() for w in WINDOWS}
    urls = metrics_url or settings.metrics_urls
    figures["stream"] = stream_call_figures(urls) if urls else None
    if as_json:
        _emit(figures)
        return
    table = Table("status", "user", "conversation", "message", "total", title="outbox")
    for status, kinds in figures["by_status_and_kind"].items():
        row = [str(kinds.get(kind, 0)) for kind in ("user", "conversation", "message")]
        table.add_row(status, *row, str(figures["by_status"][status]))
    console.print(table)
    console.print(f"oldest pending: {figures['oldest_pending_age_seconds']} s")
    console.print(f"failed in the last hour: {figures['failed_last_hour']}")
    stream = figures["stream"]
    if stream is None:
        console.print("Stream calls: unknown (give --metrics-url or OUTBOX_METRICS_URLS)")
    else:
        console.print(f"Stream calls: {stream['calls']}, of which 429: {stream['rate_limited']}")
        for url in stream["unreachable"]:
            console.print(f"[yellow]metrics unreachable: {url}[/yellow]")
    for window, found in (figures.get("series") or {}).items():
        points = found["points"]
        done = sum(p["done"] for p in points)
        failed = sum(p["failed"] for p in points)
        worst = max((p["oldest_pending_seconds"] for p in points), default=0)
        console.print(
            f"last {window}: {done} done, {failed} failed; oldest pending at most {worst:.0f} s"
        )


@app.command("list")
def list_(
    status: str = typer.Option(None, help="pending, dispatched, done or failed."),
    kind: str = typer.Option(None, help="user, conversation or message."),
    target_id: str = typer.Option(None, help="The target's id."),
    error: str = typer.Option(None, help="Text the last error contains."),
    since: str = typer.Option(None, help="Created at or after: ISO 8601 or an age (2h, 7d)."),
    until: str = typer.Option(None, help="Created at or before: ISO 8601 or an age."),
    limit: int = typer.Option(50, help="Rows per page."),
    page: int = typer.Option(1, help="Page number, from 1 (newest first)."),
    as_json: bool = JSON,
) -> None:
    """Outbox rows matching the filters, newest first, one page at a time."""
    filters = _filters(
        status=status, kind=kind, target_id=target_id, error=error, since=since, until=until
    )
    if page < 1:
        raise AdminError("--page must be at least 1")
    with _engine(load_settings()) as engine:
        rows = list_rows(engine, filters, limit=limit, offset=(page - 1) * limit)
        total = count_rows(engine, filters)
    if as_json:
        _emit({"total": total, "page": page, "rows": [row.as_dict() for row in rows]})
        return
    table = Table("id", "kind", "target", "event", "status", "tries", "updated", "last error")
    for row in rows:
        table.add_row(
            str(row.id),
            row.target_kind,
            row.target_id,
            row.event,
            row.status,
            str(row.attempts),
            row.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            (row.last_error or "")[:80],
        )
    console.print(table)
    console.print(f"page {page}: {len(rows)} of {total} rows")


@app.command()
def show(row_id: int = typer.Argument(..., help="Outbox row id."), as_json: bool = JSON) -> None:
    """One row: payload, attempts, last error, audit history, and its target in both places."""
    settings = load_settings()
    with _engine(settings) as engine:
        row = get_row(engine, row_id)
        history = naming_row(engine, row_id)
        target = _target_state(engine, settings, row)
    if as_json:
        _emit({"row": row.as_dict(), "audit": history, "target": target})
        return
    for key, value in row.as_dict().items():
        console.print(f"[bold]{key}[/bold]: {value}")
    console.print(f"[bold]audit[/bold]: {history or 'none'}")
    console.print(f"[bold]database wants[/bold]: {target['database']}")
    console.print(f"[bold]Stream holds[/bold]: {target['stream']}")


def _target_state(engine: Engine, settings: Settings, row: RowView) -> dict[str, Any]:
    """The target's desired state next to Stream's (Stream: when credentials are set)."""
    from stream_outbox.worker.verify.target import describe

    binding = _binding(engine, settings)
    return describe(engine, settings, binding, kind=row.target_kind, target_id=row.target_id)


@app.command("replay")
def replay_failed(
    ids: list[int] = typer.Argument(None, help="Failed row ids to replay."),
    all_failed: bool = typer.Option(False, "--all-failed", help="Replay failed rows by filter."),
    kind: str = typer.Option(None, help="With --all-failed: user, conversation or message."),
    target_id: str = typer.Option(None, help="With --all-failed: the target's id."),
    error: str = typer.Option(None, help="With --all-failed: text the last error contains."),
    since: str = typer.Option(None, help="With --all-failed: created at or after."),
    until: str = typer.Option(None, help="With --all-failed: created at or before."),
    per_second: float = typer.Option(50.0, help="Pace: rows made due per second."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be replayed."),
    actor: str = ACTOR,
    as_json: bool = JSON,
) -> None:
    """Send failed rows back to pending (paced); the relay picks them up."""
    if ids and all_failed:
        raise AdminError("give row ids or --all-failed, not both")
    if not ids and not all_failed:
        raise AdminError("give row ids, or --all-failed (with filters) to replay by filter")
    filters = (
        _filters(
            status="failed", kind=kind, target_id=target_id, error=error, since=since, until=until
        )
        if all_failed
        else None
    )
    with _engine(load_settings()) as engine:
        chosen = replay(
            engine,
            actor=_actor(actor),
            ids=ids or (),
            filters=filters,
            dry_run=dry_run,
            per_second=per_second,
        )
    if as_json:
        _emit({"dry_run": dry_run, "count": len(chosen), "ids": chosen})
        return
    verb = "would replay" if dry_run else "replayed"
    seconds = len(chosen) / per_second
    console.print(f"{verb} {len(chosen)} rows" + ("" if dry_run else f" over {seconds:.0f} s"))
    if chosen:
        console.print(", ".join(map(str, chosen[:50])) + (" ..." if len(chosen) > 50 else ""))


app.command()(errors)


@app.command("purge")
def purge_done(
    older_than: str = typer.Option(
        None, help="Age of done rows to delete, e.g. 7d (default: env OUTBOX_RETENTION, 7d)."
    ),
    batch: int = typer.Option(5000, help="Rows per delete (short transactions)."),
    actor: str = ACTOR,
    as_json: bool = JSON,
) -> None:
    """Delete done rows older than the retention, in batches."""
    settings = load_settings()
    age = parse_duration(older_than) if older_than else settings.retention
    with _engine(settings) as engine:
        count = purge(engine, actor=_actor(actor), older_than=age, batch=batch)
    if as_json:
        _emit({"deleted": count, "older_than": str(age)})
    else:
        console.print(f"deleted {count} done rows older than {age}")


@app.command("resync")
def resync_all(
    kind: list[str] = typer.Option(
        None, help="user and/or conversation (repeat the option); default both."
    ),
    restart: bool = typer.Option(False, "--restart", help="Start over instead of resuming."),
    actor: str = ACTOR,
    as_json: bool = JSON,
) -> None:
    """Write a reconcile row for every user and conversation (resumable, with progress)."""
    kinds = kind or ["user", "conversation"]
    settings = load_settings()
    with _engine(settings) as engine:
        binding = _binding(engine, settings)
        counts = run_with_progress(
            engine, binding, kinds, "resync", {}, _actor(actor), not restart, as_json
        )
    if as_json:
        _emit({"enqueued": counts})
    else:
        console.print(f"enqueued {counts}")


class RateColumn(ProgressColumn):
    """Rows per second of a task."""

    def render(self, task: Task) -> Text:
        """The task's speed, or a dash before there is one."""
        speed = task.finished_speed or task.speed
        return Text("-/s" if speed is None else f"{speed:,.0f}/s")


def run_with_progress(
    engine: Engine,
    binding: Binding,
    kinds: list[str],
    event: str,
    payload: dict[str, Any],
    actor: str,
    resume: bool,
    quiet: bool,
    *,
    select_ids: Callable[[Connection, str, str | None, int], list[str]] | None = None,
    totals: dict[str, int] | None = None,
) -> dict[str, int]:
    """Run :func:`resync` with a Rich progress bar per kind (rate and ETA)."""
    check_resync_kinds(kinds)
    if totals is None:
        with engine.connect() as conn:
            totals = {kind: binding.count(conn, kind) for kind in kinds}
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, disable=quiet) as progress:
        tasks = {k: progress.add_task(k, total=totals[k]) for k in kinds}

        def advance(kind: str, count: int) -> None:
            progress.advance(tasks[kind], count)

        return resync(
            engine,
            binding,
            actor=actor,
            kinds=kinds,
            event=event,
            payload=payload,
            resume=resume,
            progress=advance,
            select_ids=select_ids,
        )


@app.command()
def verify(
    kind: str = typer.Option(None, help="Only users or only channels: user or channel."),
    target_id: str = typer.Option(None, help="Only this user id or channel cid (type:id)."),
    messages: bool = typer.Option(
        False,
        "--messages",
        help="Also each channel's messages (each once, original created_at, in order) "
        "and members' last_read.",
    ),
    as_json: bool = JSON,
) -> None:
    """Compare what the database wants with what Stream holds (read-only).

    Prints the differences and exits with status 1 when there are any.
    """
    from stream_outbox.worker.stream.gateway import StreamGateway
    from stream_outbox.worker.verify.compare import compare
    from stream_outbox.worker.verify.readers import against_stream

    if kind not in (None, "user", "channel"):
        raise AdminError(f"unknown kind {kind!r}: use user or channel")
    settings = load_settings()
    with _engine(settings) as engine:
        binding = _binding(engine, settings)
        gateway = StreamGateway.from_settings(settings)
        desired, held = against_stream(engine, binding, gateway, history=messages)
    differences = [
        d
        for d in compare(desired, held)
        if (kind is None or d.kind == kind) and (target_id is None or d.id == target_id)
    ]
    if as_json:
        _emit({"differences": [d.__dict__ for d in differences], "count": len(differences)})
    elif differences:
        table = Table("kind", "id", "what", "database", "Stream", title="differences")
        for d in differences:
            table.add_row(d.kind, d.id, d.what, d.database, d.stream)
        console.print(table)
    else:
        counted = f"{len(desired.users)} users, {len(desired.channels)} channels"
        if messages:
            times = [t for view in desired.channels.values() for t in (view.times or {}).values()]
            dated = sum(1 for t in times if t is not None)
            counted += f", {len(times)} messages ({dated} at their original created_at)"
        console.print(f"[green]in step[/green]: {counted}")
    if differences:
        raise typer.Exit(1)
