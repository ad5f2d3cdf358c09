"""The exception hierarchy of stream-outbox; each docstring is the default message.

Everything the worker raises on purpose derives from :class:`StreamOutboxError`.
Where callers decide between retrying and giving up, the error says which:
:class:`RetryableError` (Stream unavailable, a target busy, a lock lost) may
succeed later; :class:`PermanentError` (Stream refused the request, a source row
Stream cannot take) fails its outbox rows at once, for an admin to replay.
"""

from __future__ import annotations

__all__ = [
    "AdminError",
    "BadSourceData",
    "BudgetExhausted",
    "ConfigurationError",
    "PermanentError",
    "PermanentStreamError",
    "RetryableError",
    "StreamError",
    "StreamOutboxError",
    "TransientStreamError",
]


class StreamOutboxError(Exception):
    """stream-outbox failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip().splitlines()[0])

    def describe(self) -> str:
        """One line for an outbox row's ``last_error``."""
        return str(self)


class RetryableError(StreamOutboxError):
    """This failed for now; retrying later may succeed."""


class PermanentError(StreamOutboxError):
    """This cannot succeed as it is; retrying cannot help until the input changes."""


class ConfigurationError(StreamOutboxError):
    """A setting is missing or malformed."""


class AdminError(StreamOutboxError):
    """The admin request is invalid."""


class BadSourceData(PermanentError):
    """A row of the application's database cannot be sent to Stream as it is."""


class StreamError(StreamOutboxError):
    """A call to Stream failed."""

    def __init__(
        self,
        message: str | None = None,
        *,
        endpoint: str = "",
        status: int | None = None,
        code: int | str | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status
        self.code = code

    def describe(self) -> str:
        """One line for an outbox row's ``last_error``: endpoint, status, code and text."""
        parts = [self.endpoint or "stream"]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code is not None:
            parts.append(f"code {self.code}")
        return f"{' '.join(parts)}: {self}"


class TransientStreamError(StreamError, RetryableError):
    """Stream is unavailable for now (timeout, connection error, 5xx or 429); retry later."""

    def __init__(
        self,
        message: str | None = None,
        *,
        endpoint: str = "",
        status: int | None = None,
        code: int | str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint, status=status, code=code)
        self.retry_after = retry_after


class PermanentStreamError(StreamError, PermanentError):
    """Stream rejected the request (validation); retrying cannot help."""


class BudgetExhausted(TransientStreamError):
    """The shared rate budget had no slot for an endpoint in time: the job goes again
    later without spending a retry (no call was made, nothing failed)."""
