"""Emulator settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from stream_emulator.validation import DEFAULT_CHANNEL_TYPES

DEFAULT_API_KEY = "emulator-key"
# At least 32 bytes: PyJWT warns about shorter HS256 keys, and a warning is an
# error in test suites that run with ``filterwarnings = error``.
DEFAULT_API_SECRET = "emulator-secret-for-local-development-only"
DEFAULT_HOST = "127.0.0.1"


@dataclass
class EmulatorConfig:
    """How an emulator instance behaves.

    ``rate_limits`` maps Stream endpoint names (``UpdateUsers``, ``SendMessage``...,
    or ``"*"`` for every endpoint) to calls allowed per ``window_seconds``; no entry
    means unlimited. ``latency_ms`` is added to every API call.
    """

    api_key: str = DEFAULT_API_KEY
    api_secret: str = DEFAULT_API_SECRET
    host: str = DEFAULT_HOST
    port: int = 0
    rate_limits: dict[str, int] = field(default_factory=dict)
    window_seconds: float = 60.0
    latency_ms: float = 0.0
    channel_types: tuple[str, ...] = DEFAULT_CHANNEL_TYPES
