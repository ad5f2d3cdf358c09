"""Times and ages as operators write them: ISO 8601, or an age (``2h``, ``7d``) ago."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stream_outbox.worker import settings
from stream_outbox.worker.errors import AdminError

__all__ = ["parse_duration", "parse_time"]


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"1w"`` (or ``"1h30m"``) as a timedelta."""
    try:
        return settings.parse_duration(text)
    except ValueError as exc:
        raise AdminError(str(exc)) from None


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC when no zone is given) or a duration ago (``"2h"``)."""
    now = now or datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        try:
            return now - parse_duration(text)
        except AdminError:
            raise AdminError(
                f"{text!r} is not a time: use ISO 8601 (2026-11-25T10:00) or an age (2h)"
            ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
