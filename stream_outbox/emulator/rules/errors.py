"""Stream-shaped API errors.

Codes and HTTP statuses follow Stream's "API Error Codes" table
(https://getstream.io/chat/docs/api_errors_response). Error bodies follow the
shape the real API returns: ``code``, ``message``, ``StatusCode``, ``duration``,
``more_info`` and ``details``; messages are prefixed with the endpoint name as
in ``UpdateChannel failed with error: "..."``.
"""

from __future__ import annotations

import json
from typing import Any

MORE_INFO = "https://getstream.io/chat/docs/api_errors_response"

# Stream codes (name in the docs table -> code)
INPUT_ERROR = 4  # 400 Bad Request
ACCESS_KEY_ERROR = 2  # 401 Access Key invalid
AUTHENTICATION_ERROR = 5  # 401 problem with authentication
TOKEN_EXPIRED = 40  # 401
TOKEN_NOT_VALID_YET = 41  # 401
TOKEN_BEFORE_ISSUED_AT = 42  # 401
TOKEN_SIGNATURE_INVALID = 43  # 401
NOT_ALLOWED = 17  # 403 Forbidden
DOES_NOT_EXIST = 16  # 404 Not Found
MESSAGE_TOO_LONG = 20  # 400
REQUEST_TIMEOUT = 23  # 408
PAYLOAD_TOO_BIG = 22  # 413
RATE_LIMIT = 9  # 429 Too Many Requests
INTERNAL_ERROR = -1  # 500; the code Stream's error tables use for internal errors

_DEFAULT_CODE_BY_STATUS = {
    400: INPUT_ERROR,
    401: AUTHENTICATION_ERROR,
    403: NOT_ALLOWED,
    404: DOES_NOT_EXIST,
    408: REQUEST_TIMEOUT,
    413: PAYLOAD_TOO_BIG,
    429: RATE_LIMIT,
}


def default_code_for_status(status: int) -> int:
    """Return the Stream error code that goes with an HTTP status."""
    return _DEFAULT_CODE_BY_STATUS.get(status, INTERNAL_ERROR)


class StreamError(Exception):
    """An error the emulator answers with a Stream-shaped body."""

    def __init__(
        self,
        status: int,
        code: int,
        detail: str,
        *,
        prefixed: bool = True,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.prefixed = prefixed
        self.headers = headers

    def message_for(self, endpoint: str) -> str:
        """Render the message as Stream does: ``<Endpoint> failed with error: "<detail>"``."""
        if not self.prefixed:
            return self.detail
        return f"{endpoint} failed with error: {json.dumps(self.detail)}"


def input_error(detail: str) -> StreamError:
    """400 / code 4."""
    return StreamError(400, INPUT_ERROR, detail)


def not_found(detail: str) -> StreamError:
    """404 / code 16."""
    return StreamError(404, DOES_NOT_EXIST, detail)


def user_deleted(user_id: str) -> StreamError:
    """404 / code 16 ``the user X was deleted``: Stream's answer when a deleted user's id is
    upserted or used (wording from GetStream/stream-chat-flutter#850)."""
    return StreamError(404, DOES_NOT_EXIST, f"the user {user_id} was deleted")


def user_deactivated(user_id: str) -> StreamError:
    """403 / code 17 for a deactivated user acting (inferred: Stream documents that a
    deactivated user cannot send messages, not the error it answers)."""
    return StreamError(403, NOT_ALLOWED, f"the user {user_id} is deactivated")


def error_body(endpoint: str, err: StreamError, duration: str) -> dict[str, Any]:
    """Build the JSON body of an error response."""
    return {
        "code": err.code,
        "message": err.message_for(endpoint),
        "StatusCode": err.status,
        "duration": duration,
        "more_info": MORE_INFO,
        "details": [],
    }
