"""``stream-outbox history``: the chat history in Stream's import format, up to a watermark."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from stream_outbox.worker.app_binding import resolve_binding
from stream_outbox.worker.cli.options import ACTOR, JSON, Bars, connected, emit
from stream_outbox.worker.errors import AdminError
from stream_outbox.worker.operations.times import parse_time
from stream_outbox.worker.settings import load_settings
from stream_outbox.worker.store import audit
from stream_outbox.worker.store.cutover import EXPORT_ACTION, abandon_export
from stream_outbox.worker.store.repository import OutboxRepository
from stream_outbox.worker.stream_import.export import (
    MAX_FILE_BYTES,
    export_history,
    resumed_watermark,
)
from stream_outbox.worker.stream_import.files import export_files, read_state

__all__ = ["app"]

app = typer.Typer(
    help="Going live through Stream's import: the history as import files.",
    no_args_is_help=True,
)


@app.command("export")
def export(
    out: Path = typer.Argument(..., help="Folder for the files (history-0001.jsonl, ...)."),
    until: str = typer.Option(
        None, help="Watermark: messages created at or before it (ISO 8601 or an age; a minute ago)."
    ),
    max_mb: int = typer.Option(300, min=1, max=300, help="Largest file, in MB (Stream: 300)."),
    max_bytes: int = typer.Option(None, min=1000, max=MAX_FILE_BYTES, hidden=True),
    actor: str = ACTOR,
    as_json: bool = JSON,
) -> None:
    """Write users, channels, members and messages up to the watermark as Stream import
    files; the cut-over (the watermark) is recorded in the audit table before the export
    reads anything, and the import is pending from then on.

    An interrupted export resumes when run again with the same folder (and watermark:
    without --until, the folder's); a folder holding another export is refused."""
    watermark = parse_time(until) if until else resumed_watermark(out)
    settings = load_settings()
    bars = Bars(enabled=not as_json and sys.stderr.isatty(), on=Console(stderr=True))
    with connected(settings) as engine:
        binding = resolve_binding(engine, settings.binding)
        with bars:
            result = export_history(
                engine,
                binding,
                OutboxRepository(engine),
                out,
                watermark=watermark,
                max_bytes=max_bytes or max_mb * 1000 * 1000,
                progress=bars.update,
                actor=actor,
            )
    if as_json:
        emit({**result.detail(), "already_complete": result.already_complete})
    else:
        done = "already complete:" if result.already_complete else "wrote"
        typer.echo(f"{done} {len(result.files)} files up to {result.watermark}: {result.counts}")


@app.command("import")
def import_(
    folder: Path = typer.Argument(..., help="The export's folder (its history-*.jsonl files)."),
    mode: str = typer.Option("upsert", help="upsert (overwrite) or insert (skip existing)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be imported."),
    poll: float = typer.Option(5.0, min=0.0, help="Seconds between looks at a running import."),
    actor: str = ACTOR,
) -> None:
    """Upload each file through Stream's import API, in order, and follow each import to
    its end; files imported before are skipped, one still running is followed."""
    # Stream's SDK is imported by the one command that calls Stream (a second at start-up)
    from stream_outbox.worker.stream.gateway import StreamGateway
    from stream_outbox.worker.stream.imports import ImportAPI
    from stream_outbox.worker.stream_import.upload import import_files

    files = export_files(read_state(folder), folder) if folder.is_dir() else []
    if not files:
        raise AdminError(f"{folder} holds no history-*.jsonl files (run history export)")
    settings = load_settings()
    gateway = StreamGateway.from_settings(settings)
    with connected(settings) as engine:
        outcomes = import_files(
            ImportAPI(gateway),
            engine,
            files,
            mode=mode,
            actor=actor,
            dry_run=dry_run,
            poll=poll,
            report=lambda outcome: typer.echo(outcome.line()),
        )
    if not all(outcome.state.ok for outcome in outcomes):
        raise typer.Exit(1)
    with connected(settings) as engine, engine.connect() as conn:
        export = audit.latest(conn, EXPORT_ACTION)
    if export is not None and "imported_at" in export.detail:
        again = export.detail.get("reconciled", 0)
        typer.echo(
            f"cut-over complete: {again} targets changed since the export reconciled again",
            err=True,  # the output is the files' lines, one each
        )


@app.command("abandon")
def abandon(actor: str = ACTOR) -> None:
    """Give up the latest export whose import is not complete (a failed import you will
    not retry, an export stopped for good): messages up to its watermark stop waiting,
    and the cut-over is the export before it, if any."""
    settings = load_settings()
    with connected(settings) as engine:
        given_up = abandon_export(engine, actor=actor)
    if given_up is None:
        raise AdminError("no export waits for its import: nothing to abandon")
    typer.echo(f"abandoned the export up to {given_up.watermark.isoformat()}")
