"""Settings for tests: the servers they use, the emulator's credentials, and the product's
settings and environment variables pointed at them.

``DATABASE_URL`` names the PostgreSQL server (default: local, user postgres; every run
makes databases of its own there), ``REDIS_URL`` the Redis server (every run has a key
prefix of its own there).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from stream_outbox.worker.settings import Settings, normalize_database_url

__all__ = [
    "API_KEY",
    "API_SECRET",
    "BIN",
    "REDIS_URL",
    "ROOT",
    "SERVER_URL",
    "clean_environ",
    "product_env",
    "product_settings",
]

SERVER_URL = normalize_database_url(
    os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
)
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

API_KEY = "test-key"
API_SECRET = "test-secret-that-is-at-least-32-bytes-long"

ROOT = Path(__file__).resolve().parents[2]
# The virtual environment's scripts: stream-outbox, honcho, dramatiq
BIN = Path(sys.executable).parent

# The product's variables and pytest's: a subprocess gets only those a test gives it.
OURS = ("DATABASE_URL", "REDIS_URL", "GETSTREAM_", "STREAM_CHAT_", "OUTBOX_", "PYTEST")


def clean_environ(*drop: str, **env: str) -> dict[str, str]:
    """This process's environment without the product's variables, pytest's, or names
    starting with one of ``drop``; then ``env``."""
    dropped = (*OURS, *drop)
    base = {key: value for key, value in os.environ.items() if not key.upper().startswith(dropped)}
    return {**base, **env}


def product_env(
    database_url: str,
    redis_url: str,
    stream_url: str,
    *,
    prefix: str | None = None,
    api_key: str = API_KEY,
    api_secret: str = API_SECRET,
    **extra: str,
) -> dict[str, str]:
    """The variables that point ``stream-outbox`` (relay, worker, dashboard...) at a
    database, Redis (keys under ``prefix``) and Stream (the emulator at ``stream_url``)."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "GETSTREAM_API_KEY": api_key,
        "GETSTREAM_API_SECRET": api_secret,
        "STREAM_CHAT_URL": stream_url,
    }
    if prefix is not None:
        env["OUTBOX_REDIS_PREFIX"] = prefix
    return {**env, **extra}


def product_settings(
    database_url: str, redis_url: str, stream_url: str, *, prefix: str, **options: Any
) -> Settings:
    """The settings object of the same, for the product's code run in the test's process."""
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        getstream_api_key=API_KEY,
        getstream_api_secret=API_SECRET,
        stream_chat_url=stream_url,
        redis_prefix=prefix,
        **options,
    )
