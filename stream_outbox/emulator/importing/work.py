"""The work behind an import task: analysing its file, then applying it.

Both read the file a chunk of lines at a time and hold ``guard()`` (the emulator's
lock, or nothing when the caller already holds it) for one chunk only.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stream_outbox.emulator.importing.apply import Applier
from stream_outbox.emulator.importing.file import Analyzer, read_chunks
from stream_outbox.emulator.state.store import Store, unix_now

Guard = Callable[[], AbstractContextManager[Any]]
Stopped = Callable[[], bool]


def iso(seconds: float) -> str:
    """Unix seconds as Stream's RFC 3339 time."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Job:
    """A piece of work and its outcome; ``finished`` (unix seconds) once done."""

    result: dict[str, Any] = field(default_factory=dict)
    failed: bool = False
    finished: float | None = None


_STOPPED = Job(result={"errors": [{"error": "the emulator was reset"}]}, failed=True)


def analyze_file(
    file: Path,
    store: Store,
    limits: tuple[int, int],
    channel_types: frozenset[str] | None,
    guard: Guard,
    stopped: Stopped,
) -> Job:
    """Validate every line of ``file`` against the file and ``store``; ``limits`` is
    the file's size and the largest size accepted."""
    analyzer = Analyzer(store, channel_types)
    if not analyzer.too_large(*limits):
        for chunk in read_chunks(file):
            if stopped():
                return _STOPPED
            with guard():
                for number, raw in chunk:
                    analyzer.feed(number, raw)
    result = analyzer.result
    return Job(result=result.report(), failed=result.error_count > 0)


def apply_file(
    file: Path,
    store: Store,
    mode: str,
    analysis: dict[str, Any],
    guard: Guard,
    stopped: Stopped,
) -> Job:
    """Write the validated ``file`` to ``store``; the analysis report gains
    ``imported``."""
    applier = Applier(store, mode, iso(unix_now()))
    for chunk in read_chunks(file):
        if stopped():
            return _STOPPED
        with guard():
            applier.apply(chunk)
    with guard():
        written = applier.finish()
    return Job(result={**analysis, "imported": written})
