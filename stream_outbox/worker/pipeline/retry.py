"""The retry decision, pure: how long a failed job waits, and how its error reads."""

from __future__ import annotations

from dramatiq.common import compute_backoff

from stream_outbox.worker.errors import StreamError

__all__ = ["describe", "retry_delay_ms"]


def retry_delay_ms(
    exc: Exception, retries: int, *, min_backoff_ms: int, max_backoff_ms: int
) -> int:
    """Stream's reset time for a 429 (plus 50 ms), else exponential backoff with jitter."""
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        return int(retry_after * 1000) + 50
    _, delay_ms = compute_backoff(retries, factor=min_backoff_ms, max_backoff=max_backoff_ms)
    return int(delay_ms)


def describe(exc: Exception) -> str:
    """One line for a row's ``last_error``: Stream's endpoint, status and code, or the type."""
    return exc.describe() if isinstance(exc, StreamError) else f"{type(exc).__name__}: {exc}"
