"""The ``stream-outbox`` command line: the root app and ``main`` (the console script)."""

from stream_outbox.worker.cli.main import app, main

__all__ = ["app", "main"]
