"""Settings, from the environment and an optional ``.env`` file.

Built once at an entry point and passed in; nothing reads the environment at import.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    Field,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from stream_outbox.worker.errors import ConfigurationError

__all__ = ["Settings", "load_settings", "normalize_database_url", "parse_duration"]

_DB_SCHEMES = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "sqlite": "sqlite",
}


def normalize_database_url(url: str) -> str:
    """Accept database URLs as platforms hand them out and select psycopg 3.

    ``postgres://`` and ``postgresql://`` become ``postgresql+psycopg://``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _DB_SCHEMES or (not rest and scheme != "sqlite"):
        raise ValueError("must be a postgres://, postgresql:// or sqlite:// URL")
    return f"{_DB_SCHEMES[scheme]}://{rest}"


_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"1w"`` (or ``"1h30m"``) as a timedelta."""
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned.replace(" ", ""):
        raise ValueError(f"{text!r} is not a duration like 30m, 2h or 7d")
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))


def _duration_text(value: object) -> object:
    """Seconds (``"300"``, ``"0.5"``) or ``"5m"``-style text to a timedelta; anything else
    (a number, ISO 8601 ``"PT5M"``, a timedelta) is left to pydantic."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return timedelta(seconds=float(text))
    except ValueError:
        pass
    if _DURATION.match(text.lower()):
        return parse_duration(text)
    return text


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be above 0")
    return value


def _endpoint_pairs(value: object) -> object:
    """``"UpdateUsers=600, UpdateChannel=300"`` (or a JSON object) to a mapping; pydantic
    then checks that each number is a whole number above 0."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError("is not a JSON object of Endpoint: calls_per_minute") from None
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, number = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{item!r} is not Endpoint=calls_per_minute")
        pairs[name.strip()] = number.strip()
    return pairs


def _comma_list(value: object) -> object:
    if not isinstance(value, str):
        return value
    return [item.strip() for item in value.split(",") if item.strip()]


# A duration: seconds, "5m"/"2h"/"7d", or ISO 8601 ("PT5M"); above zero.
Duration = Annotated[timedelta, BeforeValidator(_duration_text), AfterValidator(_positive)]
# Calls per minute by Stream endpoint.
RateLimits = Annotated[dict[str, PositiveInt], NoDecode, BeforeValidator(_endpoint_pairs)]


class Settings(BaseSettings):
    """Everything the worker, relay and CLI need; each field reads the variable in its alias."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field(validation_alias="DATABASE_URL", repr=False)
    # The application's binding, module:attribute (a Binding or a function returning one);
    # unset: the reference application's
    binding: str | None = Field(None, validation_alias="OUTBOX_BINDING")
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    getstream_api_key: str | None = Field(None, validation_alias="GETSTREAM_API_KEY")
    getstream_api_secret: SecretStr | None = Field(None, validation_alias="GETSTREAM_API_SECRET")
    getstream_app_id: str | None = Field(None, validation_alias="GETSTREAM_APP_ID")
    stream_chat_url: str | None = Field(
        None, validation_alias=AliasChoices("STREAM_CHAT_URL", "stream_chat_url")
    )
    stream_timeout: Duration = Field(timedelta(seconds=6), validation_alias="STREAM_CHAT_TIMEOUT")
    # Pace every worker together under Stream's per-endpoint limits: read from Stream at
    # start-up and every ten minutes, Stream's published table until then.
    stream_limits: bool = Field(True, validation_alias="OUTBOX_STREAM_LIMITS")
    # Per-endpoint budgets, calls per minute, over Stream's: "UpdateUsers=600,...".
    rate_limits: RateLimits = Field(default_factory=dict, validation_alias="OUTBOX_RATE_LIMITS")
    max_retries: int = Field(10, ge=0, validation_alias="OUTBOX_MAX_RETRIES")
    min_backoff_ms: int = Field(500, ge=1, validation_alias="OUTBOX_MIN_BACKOFF_MS")
    max_backoff_ms: int = Field(60_000, ge=1, validation_alias="OUTBOX_MAX_BACKOFF_MS")
    visibility_timeout: Duration = Field(
        timedelta(minutes=5), validation_alias="OUTBOX_VISIBILITY_TIMEOUT"
    )
    relay_batch_size: int = Field(500, ge=1, validation_alias="OUTBOX_RELAY_BATCH_SIZE")
    relay_poll_interval: Duration = Field(
        timedelta(seconds=1), validation_alias="OUTBOX_RELAY_POLL_INTERVAL"
    )
    # Conversations reconciled by one job (one database read and one member upsert for all)
    conversations_per_job: int = Field(
        50, ge=1, le=500, validation_alias="OUTBOX_CONVERSATIONS_PER_JOB"
    )
    worker_threads: int = Field(8, ge=1, validation_alias="OUTBOX_WORKER_THREADS")
    # Threads of each worker process kept for the priority queue (on-demand migrations),
    # so a request never waits for a backlog job to end; 0: the worker threads take both.
    priority_threads: int = Field(2, ge=0, le=64, validation_alias="OUTBOX_PRIORITY_THREADS")
    # Stream calls a worker process makes at once for the conversations of its jobs, when
    # Stream is slow enough for it to pay (calls over 10 ms); 1: one at a time per job.
    stream_concurrency: int = Field(32, ge=1, le=256, validation_alias="OUTBOX_STREAM_CONCURRENCY")
    # How long an idle worker waits between polls of Redis at most (Dramatiq's
    # worker_timeout). Enqueues wake idle workers at once (worker.pipeline.wakeup): this only
    # bounds the pickup of a job whose wake-up was lost.
    worker_timeout_ms: int = Field(100, ge=1, validation_alias="OUTBOX_WORKER_TIMEOUT_MS")
    # Seconds a per-target lock outlives a worker killed while holding it (SIGKILL, a
    # lost machine): that target waits this long. Longer than any one reconcile.
    lock_lease: Duration = Field(timedelta(minutes=2), validation_alias="OUTBOX_LOCK_LEASE")
    deleted_user_policy: Literal["deactivate", "delete", "keep"] = Field(
        "deactivate", validation_alias="OUTBOX_DELETED_USER_POLICY"
    )
    hard_delete_channels: bool = Field(False, validation_alias="OUTBOX_HARD_DELETE_CHANNELS")
    mirror_messages: bool = Field(True, validation_alias="OUTBOX_MIRROR_MESSAGES")
    queue_name: str = Field("stream_outbox", validation_alias="OUTBOX_QUEUE")
    # Prefix of every Redis key (Dramatiq's queues, locks, rate budget, known users):
    # several deployments (or test runs) can share one Redis database.
    redis_prefix: str = Field("stream_outbox", min_length=1, validation_alias="OUTBOX_REDIS_PREFIX")
    # How old done rows must be before `admin purge` deletes them
    retention: Duration = Field(timedelta(days=7), validation_alias="OUTBOX_RETENTION")
    # Workers' metrics endpoints that `admin stats` reads Stream call counts from.
    metrics_urls: Annotated[list[str], NoDecode, BeforeValidator(_comma_list)] = Field(
        default_factory=list, validation_alias="OUTBOX_METRICS_URLS"
    )
    metrics_port: int | None = Field(None, ge=0, le=65535, validation_alias="OUTBOX_METRICS_PORT")
    # The interface of the metrics port (with /healthz and /readyz): 0.0.0.0 for probes
    # and scrapes from outside the container or machine.
    metrics_host: str = Field("127.0.0.1", min_length=1, validation_alias="OUTBOX_METRICS_HOST")
    # How long each readiness check (/readyz, `health --ready`) waits for the database,
    # Redis and Stream: to connect, and again for the answer.
    health_timeout: Duration = Field(timedelta(seconds=3), validation_alias="OUTBOX_HEALTH_TIMEOUT")
    # The admin dashboard (stream-outbox dashboard): HTTP Basic (user and password)
    # and/or a token (bearer header or login form); it refuses to start with neither.
    dashboard_user: str | None = Field(None, validation_alias="OUTBOX_DASHBOARD_USER")
    dashboard_password: SecretStr | None = Field(None, validation_alias="OUTBOX_DASHBOARD_PASSWORD")
    dashboard_token: SecretStr | None = Field(None, validation_alias="OUTBOX_DASHBOARD_TOKEN")
    # Failed sign-ins allowed per client address in a moving window; past it the client
    # gets 429 until the window moves on, right credentials or not.
    dashboard_lockout: str = Field("10 per 5 minutes", validation_alias="OUTBOX_DASHBOARD_LOCKOUT")

    # The inbound side (`stream-outbox inbound`): the port its webhook receiver listens on
    # (POST /stream/webhook, /healthz, /metrics), the largest body it reads, and how often
    # it catches up from Stream's own state (`inbound sync`; 0: only when asked).
    inbound_port: int = Field(8090, ge=0, le=65535, validation_alias="OUTBOX_INBOUND_PORT")
    inbound_host: str = Field("127.0.0.1", min_length=1, validation_alias="OUTBOX_INBOUND_HOST")
    inbound_max_body: int = Field(
        1024 * 1024, ge=1024, le=64 * 1024 * 1024, validation_alias="OUTBOX_INBOUND_MAX_BODY"
    )
    inbound_sync_every: float = Field(0.0, ge=0, validation_alias="OUTBOX_INBOUND_SYNC_EVERY")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalize_database_url(value.strip())

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("stream_chat_url")
    @classmethod
    def _stream_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("dashboard_lockout")
    @classmethod
    def _dashboard_lockout(cls, value: str) -> str:
        import limits

        try:
            limits.parse(value)
        except ValueError:
            raise ValueError("must be a rate like '10 per 5 minutes'") from None
        return value

    def stream_credentials(self) -> tuple[str, str]:
        """The Stream API key and secret; a :class:`ConfigurationError` names what is missing."""
        if not self.getstream_api_key:
            raise ConfigurationError("GETSTREAM_API_KEY is not set")
        if self.getstream_api_secret is None or not self.getstream_api_secret.get_secret_value():
            raise ConfigurationError("GETSTREAM_API_SECRET is not set")
        return self.getstream_api_key, self.getstream_api_secret.get_secret_value()


def _variable(name: str, alias: object) -> str:
    """The environment variable a field reads (the first of several choices)."""
    if isinstance(alias, str):
        return alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return name.upper()


_VARIABLES = {
    name: _variable(name, field.validation_alias) for name, field in Settings.model_fields.items()
}


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning a validation failure into one line naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        variable = _VARIABLES.get(field, field.upper())
        reason = "is not set" if error["type"] == "missing" else str(error["msg"])
        reason = reason.removeprefix("Value error, ")
        where = "".join(f" {part}:" for part in error["loc"][1:])  # a mapping's key
        raise ConfigurationError(f"{variable}{where} {reason}") from None
