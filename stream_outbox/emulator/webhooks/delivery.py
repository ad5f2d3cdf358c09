"""One webhook call: its signature, its headers and Stream's retry policy (pure decisions).

Stream's docs: every request carries ``X-Webhook-Id`` ("consistent between retries"),
``X-Webhook-Attempt`` ("starting from 1"), ``X-Api-Key`` and ``X-Signature``, the HMAC
of the body with the API secret (``docs/webhooks/webhooks_overview/webhooks_overview.md``
in GetStream/stream-chat-python; the SDK's ``verify_webhook`` checks a hex HMAC-SHA256).
Retries (https://getstream.io/chat/docs/python/push_webhook/, "Performance and Error
Handling"): "Response code is 408, 429 or >=500: 3 attempts; Network error: 2 attempts;
Request timeout: 3 attempts. The timeout of one request is 6 seconds, and the request
with all retries cannot exceed the duration of 15 seconds." Other answers (2xx, other
4xx) end the delivery. The pause between attempts is not published: the emulator waits
``backoff`` seconds, doubling each time (inferred).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

TIMEOUT = "timeout"
NETWORK_ERROR = "error"
REQUEST_TIMEOUT_SECONDS = 6.0
TOTAL_SECONDS = 15.0


@dataclass(frozen=True)
class Delivery:
    """An event to send to one URL (``key``: what keeps its order, the channel's cid)."""

    webhook_id: str
    url: str
    body: bytes
    event_type: str
    key: str


def signature(secret: bytes, body: bytes) -> str:
    """``X-Signature``: hex HMAC-SHA256 of the raw body with the API secret."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def headers(delivery: Delivery, attempt: int, api_key: str, secret: bytes) -> dict[str, str]:
    """The headers of one attempt."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "stream-emulator-webhooks",
        "X-Webhook-Id": delivery.webhook_id,
        "X-Webhook-Attempt": str(attempt),
        "X-Api-Key": api_key,
        "X-Signature": signature(secret, delivery.body),
    }


def attempts_allowed(outcome: int | str) -> int:
    """How many attempts in all an outcome allows (an HTTP status, ``timeout`` or ``error``)."""
    if outcome == TIMEOUT:
        return 3
    if outcome == NETWORK_ERROR:
        return 2
    if isinstance(outcome, int) and (outcome in (408, 429) or outcome >= 500):
        return 3
    return 1


def retry_after(
    outcome: int | str, attempt: int, elapsed: float, backoff: float, total: float = TOTAL_SECONDS
) -> float | None:
    """Seconds to wait before the next attempt, or None when the delivery is over."""
    if attempt >= attempts_allowed(outcome):
        return None
    pause: float = backoff * 2.0 ** (attempt - 1)
    if elapsed + pause >= total:
        return None
    return pause


def succeeded(outcome: int | str) -> bool:
    """A 2xx answer."""
    return isinstance(outcome, int) and 200 <= outcome < 300
