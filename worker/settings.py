"""Settings, from the environment and an optional ``.env`` file.

Built once at an entry point and passed in; nothing reads the environment at import.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.errors import ConfigurationError

__all__ = ["Settings", "load_settings", "normalize_database_url"]

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
    if not sep or scheme not in _DB_SCHEMES or not rest:
        raise ValueError("must be a postgres://, postgresql:// or sqlite:// URL")
    return f"{_DB_SCHEMES[scheme]}://{rest}"


class Settings(BaseSettings):
    """Everything the worker, relay and CLI need; each field reads the variable in its alias."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field(validation_alias="DATABASE_URL", repr=False)
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    getstream_api_key: str | None = Field(None, validation_alias="GETSTREAM_API_KEY")
    getstream_api_secret: SecretStr | None = Field(None, validation_alias="GETSTREAM_API_SECRET")
    getstream_app_id: str | None = Field(None, validation_alias="GETSTREAM_APP_ID")
    stream_chat_url: str | None = Field(
        None, validation_alias=AliasChoices("STREAM_CHAT_URL", "stream_chat_url")
    )

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

    def stream_credentials(self) -> tuple[str, str]:
        """The Stream API key and secret; a :class:`ConfigurationError` names what is missing."""
        if not self.getstream_api_key:
            raise ConfigurationError("GETSTREAM_API_KEY is not set")
        if self.getstream_api_secret is None or not self.getstream_api_secret.get_secret_value():
            raise ConfigurationError("GETSTREAM_API_SECRET is not set")
        return self.getstream_api_key, self.getstream_api_secret.get_secret_value()


_VARIABLES = {
    name: str(field.validation_alias if isinstance(field.validation_alias, str) else name.upper())
    for name, field in Settings.model_fields.items()
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
        raise ConfigurationError(f"{variable} {reason}") from None
