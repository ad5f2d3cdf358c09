"""Stream's times: RFC 3339 in UTC with a ``Z``, up to nanoseconds (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["parse_time", "stream_time"]


def parse_time(value: object) -> datetime | None:
    """Stream's RFC 3339 time (``...Z``, up to nanoseconds) as an aware datetime; None if
    it is not one."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python takes at most microseconds: cut the fraction to six digits
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def stream_time(moment: datetime) -> str:
    """A time as Stream writes one (RFC 3339, UTC, microseconds, ``Z``)."""
    text = moment.astimezone(UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")
