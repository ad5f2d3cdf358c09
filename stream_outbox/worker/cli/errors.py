"""``stream-outbox admin errors``: failed rows grouped by cause, and replaying one cause."""

from __future__ import annotations

import typer
from rich.table import Column, Table

from stream_outbox.worker.cli.options import ACTOR, JSON, connected, console, emit
from stream_outbox.worker.error_groups import ErrorGroup, find_group
from stream_outbox.worker.operations.replay import replay_group
from stream_outbox.worker.operations.rows import failure_groups
from stream_outbox.worker.settings import load_settings

__all__ = ["errors"]


def errors(
    replay: str = typer.Option(None, help="Replay the failed rows of the cause with this key."),
    per_second: float = typer.Option(50.0, help="With --replay: rows made due per second."),
    yes: bool = typer.Option(False, "--yes", help="With --replay: do not ask first."),
    actor: str = ACTOR,
    as_json: bool = JSON,
) -> None:
    """Failed rows grouped by cause (endpoint, code, error text), largest group first."""
    with connected(load_settings()) as engine:
        groups = failure_groups(engine, with_ids=as_json)
        if replay is not None:
            group = find_group(groups, replay)
            if not yes:
                typer.confirm(f"Replay {group.count} failed rows of {group.cause}?", abort=True)
            chosen = replay_group(
                engine, actor=actor, key=replay, until=group.last_seen, per_second=per_second
            )
            console.print(f"replayed {len(chosen)} rows over {len(chosen) / per_second:.0f} s")
            return
    if as_json:
        emit({"groups": [group.as_dict() for group in groups]})
    else:
        console.print(_table(groups))


def _table(groups: list[ErrorGroup]) -> Table | str:
    """The groups as a table, each with the command that replays it."""
    if not groups:
        return "no failed rows"
    table = Table(
        Column("key", no_wrap=True),
        "rows",
        "cause",
        "first seen",
        "last seen",
        "kinds",
        "sample targets",
        title="failed rows by cause",
        caption="replay a cause: stream-outbox admin errors --replay KEY",
    )
    for g in groups:
        seen = [f"{t:%Y-%m-%d %H:%M:%S}" if t else "" for t in (g.first_seen, g.last_seen)]
        kinds, samples = ", ".join(sorted(g.kinds)), ", ".join(g.samples)
        table.add_row(g.key, str(g.count), str(g.cause), *seen, kinds, samples)
    return table
