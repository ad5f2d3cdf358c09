"""``stream-outbox history``: the chat history in Stream's import format, up to a watermark."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from sqlalchemy import create_engine

from stream_outbox.worker.app_binding import resolve_binding
from stream_outbox.worker.errors import AdminError
from stream_outbox.worker.operations.times import parse_time
from stream_outbox.worker.settings import load_settings
from stream_outbox.worker.store.repository import OutboxRepository
from stream_outbox.worker.stream_import.export import (
    MAX_FILE_BYTES,
    export_history,
    record_export,
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
    actor: str = typer.Option(None, help="Who runs it, for the audit (default: OS user)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Write users, channels, members and messages up to the watermark as Stream import
    files; the watermark is recorded in the audit table.

    An interrupted export resumes when run again with the same folder (and watermark:
    without --until, the folder's); a folder holding another export is refused."""
    watermark = parse_time(until) if until else resumed_watermark(out)
    settings = load_settings()
    engine = create_engine(settings.database_url, pool_pre_ping=True)
    bar = ExportProgress(enabled=not as_json and sys.stderr.isatty())
    try:
        binding = resolve_binding(engine, settings.binding)
        with bar:
            result = export_history(
                engine,
                binding,
                OutboxRepository(engine),
                out,
                watermark=watermark,
                max_bytes=max_bytes or max_mb * 1000 * 1000,
                progress=bar.update,
            )
        record_export(engine, result, actor=actor or getpass.getuser())
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps({**result.detail(), "already_complete": result.already_complete}))
    else:
        done = "already complete:" if result.already_complete else "wrote"
        typer.echo(f"{done} {len(result.files)} files up to {result.watermark}: {result.counts}")


class ExportProgress:
    """The export's progress on stderr, one bar per kind of item (rich); silent when off."""

    def __init__(self, enabled: bool) -> None:
        self._progress = Progress(
            TextColumn("{task.description:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._tasks: dict[str, TaskID] = {}

    def update(self, kind: str, *, done: int, total: int | None) -> None:
        """``done`` items of ``kind`` written (of ``total`` when known)."""
        task = self._tasks.get(kind)
        if task is None:
            task = self._tasks[kind] = self._progress.add_task(f"{kind}s", total=total)
        self._progress.update(task, completed=done, total=total)

    def __enter__(self) -> ExportProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


@app.command("import")
def import_(
    folder: Path = typer.Argument(..., help="The export's folder (its history-*.jsonl files)."),
    mode: str = typer.Option("upsert", help="upsert (overwrite) or insert (skip existing)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be imported."),
    poll: float = typer.Option(5.0, min=0.0, help="Seconds between looks at a running import."),
    actor: str = typer.Option(None, help="Who runs it, for the audit (default: OS user)."),
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
    engine = create_engine(settings.database_url, pool_pre_ping=True)
    try:
        outcomes = import_files(
            ImportAPI(gateway),
            engine,
            files,
            mode=mode,
            actor=actor or getpass.getuser(),
            dry_run=dry_run,
            poll=poll,
            report=lambda outcome: typer.echo(outcome.line()),
        )
    finally:
        engine.dispose()
    if not all(outcome.state.ok for outcome in outcomes):
        raise typer.Exit(1)
