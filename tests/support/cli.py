"""The ``stream-outbox`` command line run in the test's process (Typer's ``CliRunner``):
its settings come from the environment, as the installed script's do."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner, Result

from stream_outbox.worker.cli import app

__all__ = ["as_json", "invoke"]


def invoke(*args: str, input: str | None = None) -> Result:
    """``stream-outbox *args``; an exception is caught into the result, as a user sees it."""
    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=True)


def as_json(result: Result) -> Any:
    """The JSON a command printed; it must have exited 0."""
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)
