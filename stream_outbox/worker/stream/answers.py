"""What Stream's error answers mean: its codes where it gives one, its text where it does not.

Stream answers an error with an HTTP status, a numeric ``code`` and a message. Where
the code alone decides, the decision reads the code. Some answers share code 4
(InputError) and differ only in their English text; the text matches live here, each
with the report that shows Stream's wording, so a change of wording is one edit.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from stream_outbox.worker.errors import PermanentStreamError, StreamError, TransientStreamError

__all__ = [
    "INPUT_ERROR",
    "NOT_FOUND",
    "error_from",
    "is_deleted_user",
    "is_duplicate_message",
    "is_not_found",
    "names_missing_users",
    "rate_limit_wait",
    "refuses_the_message",
    "retry_after",
]

INPUT_ERROR = 4  # Stream's InputError: the request is invalid
NOT_FOUND = 16  # Stream's DoesNotExist: no such user, channel or message
MESSAGE_TOO_LONG = 20  # Stream's MessageTooLong: over the channel type's max_message_length
PAYLOAD_TOO_BIG = 22  # Stream's PayloadTooBig (HTTP 413)
# Past the reset Stream names (its clock and ours are not one), and when it names none
_RESET_MARGIN_S = 0.05
_UNSAID_WAIT_S = 1.0


def is_not_found(error: StreamError) -> bool:
    """Stream holds no such resource (code 16)."""
    return error.code is not None and str(error.code) == str(NOT_FOUND)


def refuses_the_message(error: StreamError) -> bool:
    """A send refused for the message itself, not its channel or author: its text over the
    channel type's ``max_message_length`` (code 20) or its body too big (code 22)."""
    return error.code is not None and str(error.code) in (
        str(MESSAGE_TOO_LONG),
        str(PAYLOAD_TOO_BIG),
    )


def is_deleted_user(error: StreamError) -> bool:
    """An upsert refused because the user was deleted in Stream (until ``restore_users``).

    Code 16, ``"... the user X was deleted"`` (GetStream/stream-chat-flutter#850; a
    deleted id cannot be reused: GetStream/stream-chat-js#924).
    """
    return is_not_found(error) and "was deleted" in str(error)


def is_duplicate_message(error: StreamError) -> bool:
    """A send refused because a message with that id exists already.

    Code 4, ``SendMessage failed with error: "a message with ID x already exists"``
    (GetStream/stream-chat-js#759; GetStream/stream-chat-android#6587 detects it the
    same way: code 4 and "already exists").
    """
    return _code_is(error, INPUT_ERROR) and "already exists" in str(error)


def names_missing_users(error: StreamError) -> bool:
    """A channel call refused because some of the users it names do not exist in Stream.

    Code 4 with, on create, ``The following users are involved in channel create
    operation, but don't exist: [...]`` (GetStream/stream-chat-react#1125) or ``... are
    specified in channel.members but don't exist``, and on add, ``could not find user X
    from add_members`` (GetStream/stream-chat-php#21).
    """
    text = str(error).lower()
    return _code_is(error, INPUT_ERROR) and ("don't exist" in text or "could not find user" in text)


def _code_is(error: StreamError, code: int) -> bool:
    # A missing code (an answer without a body) is not taken to be another code.
    return error.code is None or str(error.code) == str(code)


def error_from(endpoint: str, exc: Any, headers: Mapping[str, str]) -> StreamError:
    """The error an SDK exception (``StreamAPIException``) stands for: a 429 (with how long
    it asks to wait), a 5xx or a 408 is transient; anything else Stream refused."""
    status = exc.status_code
    code = getattr(exc, "error_code", None)
    message = str(getattr(exc, "error_message", "") or f"HTTP {status}")
    if status == 429:
        return TransientStreamError(
            message, endpoint=endpoint, status=status, code=code, retry_after=retry_after(headers)
        )
    if status >= 500 or status == 408:
        return TransientStreamError(message, endpoint=endpoint, status=status, code=code)
    return PermanentStreamError(message, endpoint=endpoint, status=status, code=code)


def rate_limit_wait(error: TransientStreamError, left: float) -> float | None:
    """How long a rate-limited call waits before it goes again: until the time a 429 names
    (a second when it names none), or the budget's next slot. None when ``error`` is no
    rate limit, or when the wait would run past ``left`` seconds."""
    if error.status != 429 and error.retry_after is None:
        return None  # a timeout, a refused connection, a 5xx: not ours to wait out here
    named = error.retry_after if error.retry_after is not None else _UNSAID_WAIT_S
    wait = named + _RESET_MARGIN_S
    return wait if wait <= left else None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """How long a 429 asks to wait: ``Retry-After`` (the API budget's), else until
    ``X-RateLimit-Reset`` (the rate limit's window); None when neither is sent."""
    wait = _seconds(headers.get("Retry-After"))
    if wait is not None:
        return max(0.0, wait)
    reset = _seconds(headers.get("X-RateLimit-Reset"))
    return None if reset is None else max(0.0, reset - time.time())


def _seconds(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None
