"""``stream-outbox admin``: see, replay and repair the outbox from the command line.

Every command takes ``--json`` for scripts. Commands that change rows write an
audit entry naming the actor (``--actor``, default: the OS user).
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table
from sqlalchemy import Engine

from stream_outbox.worker.app_binding import resolve_binding
from stream_outbox.worker.cli.errors import errors
from stream_outbox.worker.cli.options import (
    ACTOR,
    JSON,
    connected,
    console,
    emit,
    run_with_progress,
)
from stream_outbox.worker.errors import AdminError
from stream_outbox.worker.operations.purge import purge
from stream_outbox.worker.operations.replay import replay
from stream_outbox.worker.operations.rows import Filters, RowView, count_rows, get_row, list_rows
from stream_outbox.worker.operations.stats import read_stats, stream_call_figures
from stream_outbox.worker.operations.times import parse_duration
from stream_outbox.worker.settings import Settings, load_settings
from stream_outbox.worker.store.audit import naming_row
from stream_outbox.worker.verify.paged import Verification

__all__ = ["app"]

app = typer.Typer(help="See, replay and repair the outbox.", no_args_is_help=True)
KINDS = ("user", "conversation", "message")
SHOWN_IDS = 50


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
    with connected(settings) as engine:
        figures = read_stats(engine)
        if series:
            with engine.connect() as conn:
                figures["series"] = {w: read_series(conn, w).as_json() for w in WINDOWS}
    urls = metrics_url or settings.metrics_urls
    figures["stream"] = stream_call_figures(urls) if urls else None
    if as_json:
        emit(figures)
    else:
        _print_stats(figures)


def _print_stats(figures: dict[str, Any]) -> None:
    table = Table("status", *KINDS, "total", title="outbox")
    for status, kinds in figures["by_status_and_kind"].items():
        row = [str(kinds.get(kind, 0)) for kind in KINDS]
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
    filters = Filters.parse(
        status=status, kind=kind, target_id=target_id, error=error, since=since, until=until
    )
    if page < 1:
        raise AdminError("--page must be at least 1")
    with connected(load_settings()) as engine:
        rows = list_rows(engine, filters, limit=limit, offset=(page - 1) * limit)
        total = count_rows(engine, filters)
    if as_json:
        emit({"total": total, "page": page, "rows": [row.as_dict() for row in rows]})
    else:
        _print_rows(rows, page=page, total=total)


def _print_rows(rows: list[RowView], *, page: int, total: int) -> None:
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
    with connected(settings) as engine:
        row = get_row(engine, row_id)
        history = naming_row(engine, row_id)
        target = _target_state(engine, settings, row)
    if as_json:
        emit({"row": row.as_dict(), "audit": history, "target": target})
        return
    for key, value in row.as_dict().items():
        console.print(f"[bold]{key}[/bold]: {value}")
    console.print(f"[bold]audit[/bold]: {history or 'none'}")
    console.print(f"[bold]database wants[/bold]: {target['database']}")
    console.print(f"[bold]Stream holds[/bold]: {target['stream']}")


def _target_state(engine: Engine, settings: Settings, row: RowView) -> dict[str, Any]:
    """The target's desired state next to Stream's (Stream: when credentials are set)."""
    from stream_outbox.worker.verify.target import describe

    binding = resolve_binding(engine, settings.binding)
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
        Filters.parse(
            status="failed", kind=kind, target_id=target_id, error=error, since=since, until=until
        )
        if all_failed
        else None
    )
    with connected(load_settings()) as engine:
        chosen = replay(
            engine,
            actor=actor,
            ids=ids or (),
            filters=filters,
            dry_run=dry_run,
            per_second=per_second,
        )
    if as_json:
        emit({"dry_run": dry_run, "count": len(chosen), "ids": chosen})
        return
    verb = "would replay" if dry_run else "replayed"
    seconds = len(chosen) / per_second
    console.print(f"{verb} {len(chosen)} rows" + ("" if dry_run else f" over {seconds:.0f} s"))
    if chosen:
        more = " ..." if len(chosen) > SHOWN_IDS else ""
        console.print(", ".join(map(str, chosen[:SHOWN_IDS])) + more)


app.command()(errors)


def _add_inbox() -> None:
    from stream_outbox.worker.cli.inbox import app as inbox_app

    app.add_typer(inbox_app, name="inbox")


_add_inbox()


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
    with connected(settings) as engine:
        count = purge(engine, actor=actor, older_than=age, batch=batch)
    if as_json:
        emit({"deleted": count, "older_than": str(age)})
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
    with connected(settings) as engine:
        binding = resolve_binding(engine, settings.binding)
        counts = run_with_progress(
            engine,
            binding,
            kinds=kinds,
            event="resync",
            payload={},
            actor=actor,
            resume=not restart,
            quiet=as_json,
        )
    if as_json:
        emit({"enqueued": counts})
    else:
        console.print(f"enqueued {counts}")


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
    """Compare what the database wants with what Stream holds (read-only), a page at a
    time; Stream's calls take slots of the workers' shared budget, and wait out 429s.

    Prints the differences and exits with status 1 when there are any.
    """
    from stream_outbox.worker.runtime import operator_gateway
    from stream_outbox.worker.verify.paged import verify as verify_in_pages

    if kind not in (None, "user", "channel"):
        raise AdminError(f"unknown kind {kind!r}: use user or channel")
    settings = load_settings()
    with connected(settings) as engine:
        binding = resolve_binding(engine, settings.binding)
        gateway = operator_gateway(settings)
        found = verify_in_pages(engine, binding, gateway, history=messages)
    differences = [
        d
        for d in found.differences
        if (kind is None or d.kind == kind) and (target_id is None or d.id == target_id)
    ]
    if as_json:
        emit({"differences": [d.__dict__ for d in differences], "count": len(differences)})
    elif differences:
        table = Table("kind", "id", "what", "database", "Stream", title="differences")
        for d in differences:
            table.add_row(d.kind, d.id, d.what, d.database, d.stream)
        console.print(table)
    else:
        console.print(f"[green]in step[/green]: {_counted(found, messages=messages)}")
    if differences:
        raise typer.Exit(1)


def _counted(found: Verification, *, messages: bool) -> str:
    """What was compared: users, channels and, with the history, messages."""
    counted = f"{found.users} users, {found.channels} channels"
    if messages:
        counted += f", {found.messages} messages ({found.dated} at their original created_at)"
    return counted
