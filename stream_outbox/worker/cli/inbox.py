"""``stream-outbox admin inbox``: the inbound side's rows (Stream's events), listed, shown
and replayed like the outbox's."""

from __future__ import annotations

import typer
from rich.table import Table

from stream_outbox.worker.cli.options import ACTOR, JSON, connected, console, emit
from stream_outbox.worker.errors import AdminError
from stream_outbox.worker.inbound.inbox import InboxRow
from stream_outbox.worker.operations.inbox_rows import (
    InboxFilters,
    count_inbox,
    get_inbox_row,
    list_inbox,
    replay_inbox,
)
from stream_outbox.worker.settings import load_settings

__all__ = ["app"]

app = typer.Typer(
    help="The inbox: Stream's events (webhooks, inbound sync) and how they were applied.",
    no_args_is_help=True,
)

_STATUS = typer.Option(None, help="pending, done, failed or ignored.")
_TYPE = typer.Option(None, "--type", help="The event type, e.g. message.new.")
_CID = typer.Option(None, help="The channel, type:id.")
_ERROR = typer.Option(None, help="Text the last error (or reason ignored) contains.")
_SINCE = typer.Option(None, help="Received at or after: ISO 8601 or an age (2h, 7d).")
_UNTIL = typer.Option(None, help="Received at or before: ISO 8601 or an age.")


@app.command("list")
def list_(
    status: str = _STATUS,
    event_type: str = _TYPE,
    cid: str = _CID,
    error: str = _ERROR,
    since: str = _SINCE,
    until: str = _UNTIL,
    limit: int = typer.Option(50, help="Rows per page."),
    page: int = typer.Option(1, help="Page number, from 1 (newest first)."),
    as_json: bool = JSON,
) -> None:
    """Inbox rows matching the filters, newest first, one page at a time."""
    filters = InboxFilters.parse(
        status=status, event_type=event_type, cid=cid, error=error, since=since, until=until
    )
    if page < 1:
        raise AdminError("--page must be at least 1")
    with connected(load_settings()) as engine:
        rows = list_inbox(engine, filters, limit=limit, offset=(page - 1) * limit)
        total = count_inbox(engine, filters)
    if as_json:
        emit({"total": total, "page": page, "rows": [row.as_dict() for row in rows]})
    else:
        _print(rows, page=page, total=total)


def _print(rows: list[InboxRow], *, page: int, total: int) -> None:
    table = Table("id", "type", "channel", "message", "status", "tries", "received", "error")
    for row in rows:
        table.add_row(
            str(row.id),
            row.event_type,
            row.cid or "",
            row.message_id or "",
            row.status,
            str(row.attempts),
            row.received_at.strftime("%Y-%m-%d %H:%M:%S"),
            (row.last_error or "")[:80],
        )
    console.print(table)
    console.print(f"page {page}: {len(rows)} of {total} inbox rows")


@app.command()
def show(row_id: int = typer.Argument(..., help="Inbox row id."), as_json: bool = JSON) -> None:
    """One inbox row: the event as Stream sent it, attempts, last error or reason."""
    with connected(load_settings()) as engine:
        row = get_inbox_row(engine, row_id)
    if as_json:
        emit({"row": row.as_dict()})
        return
    for key, value in row.as_dict().items():
        console.print(f"[bold]{key}[/bold]: {value}")


@app.command("replay")
def replay(
    ids: list[int] = typer.Argument(None, help="Failed or ignored inbox row ids."),
    all_failed: bool = typer.Option(
        False, "--all-failed", help="Replay by filter (failed rows, or --status ignored)."
    ),
    status: str = typer.Option(None, help="With --all-failed: failed (default) or ignored."),
    event_type: str = _TYPE,
    cid: str = _CID,
    error: str = _ERROR,
    since: str = _SINCE,
    until: str = _UNTIL,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be replayed."),
    actor: str = ACTOR,
    as_json: bool = JSON,
) -> None:
    """Send failed (or ignored) inbox rows back to pending: `stream-outbox inbound` applies
    them again."""
    if ids and all_failed:
        raise AdminError("give row ids or --all-failed, not both")
    if not ids and not all_failed:
        raise AdminError("give row ids, or --all-failed (with filters) to replay by filter")
    filters = None
    if all_failed:
        filters = InboxFilters.parse(
            status=status or "failed",
            event_type=event_type,
            cid=cid,
            error=error,
            since=since,
            until=until,
        )
    with connected(load_settings()) as engine:
        chosen = replay_inbox(engine, actor=actor, ids=ids or (), filters=filters, dry_run=dry_run)
    if as_json:
        emit({"dry_run": dry_run, "count": len(chosen), "ids": chosen})
        return
    verb = "would replay" if dry_run else "replayed"
    console.print(f"{verb} {len(chosen)} inbox rows")
    if chosen:
        console.print(", ".join(map(str, chosen[:50])) + (" ..." if len(chosen) > 50 else ""))
