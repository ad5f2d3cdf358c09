"""Emulator settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from stream_outbox.emulator.importing.file import MAX_FILE_BYTES
from stream_outbox.emulator.importing.tasks import DEFAULT_STATE_SECONDS
from stream_outbox.emulator.rules.validation import DEFAULT_CHANNEL_TYPES

DEFAULT_API_KEY = "emulator-key"
# At least 32 bytes: PyJWT warns about shorter HS256 keys, and a warning is an
# error in test suites that run with ``filterwarnings = error``.
DEFAULT_API_SECRET = "emulator-secret-for-local-development-only"
DEFAULT_HOST = "127.0.0.1"


@dataclass
class EmulatorConfig:
    """How an emulator instance behaves.

    ``stream_limits`` applies Stream's published per-minute limits of each endpoint
    and its per-second limit (the minute's over 30); ``rate_limits`` maps Stream
    endpoint names (``UpdateUsers``, ``SendMessage``..., or ``"*"`` for every
    endpoint) to calls allowed per ``window_seconds``, over Stream's defaults. Without
    ``stream_limits`` an endpoint not in ``rate_limits`` is unlimited.
    ``api_budget_ms`` (None: off) is QueryChannels' time budget per window, each call
    costing ``api_budget_cost_ms``. Async tasks (batch deletes and deactivations) stay
    ``pending``/``running`` for ``task_seconds``. ``latency_ms`` is added to every call.
    Import tasks spend ``import_state_seconds`` in each state; files over
    ``import_max_bytes`` (Stream: 300 MB) fail analysis. Webhook requests time out after
    ``webhook_timeout_seconds`` (Stream: 6) and are retried after
    ``webhook_backoff_seconds``, doubling.
    """

    api_key: str = DEFAULT_API_KEY
    api_secret: str = DEFAULT_API_SECRET
    host: str = DEFAULT_HOST
    port: int = 0
    rate_limits: dict[str, int] = field(default_factory=dict)
    stream_limits: bool = True
    window_seconds: float = 60.0
    api_budget_ms: float | None = None
    api_budget_cost_ms: float = 100.0
    task_seconds: float = 0.0
    latency_ms: float = 0.0
    channel_types: tuple[str, ...] = DEFAULT_CHANNEL_TYPES
    import_state_seconds: float = DEFAULT_STATE_SECONDS
    import_max_bytes: int = MAX_FILE_BYTES
    webhook_timeout_seconds: float = 6.0
    webhook_backoff_seconds: float = 0.25
