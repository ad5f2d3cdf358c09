"""The exception hierarchy of stream-outbox; each docstring is the default message."""

from __future__ import annotations

__all__ = ["ConfigurationError", "StreamOutboxError"]


class StreamOutboxError(Exception):
    """stream-outbox failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigurationError(StreamOutboxError):
    """A setting is missing or malformed."""
