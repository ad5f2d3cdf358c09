"""Settings from the environment and ``.env``: URL normalization, one-line errors, secrecy."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from stream_outbox.worker.cli.main import settings_with
from stream_outbox.worker.errors import ConfigurationError, StreamOutboxError
from stream_outbox.worker.settings import Settings, load_settings, normalize_database_url

VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "GETSTREAM_API_KEY",
    "GETSTREAM_API_SECRET",
    "GETSTREAM_APP_ID",
    "STREAM_CHAT_URL",
    "STREAM_CHAT_TIMEOUT",
    "OUTBOX_RATE_LIMITS",
    "OUTBOX_VISIBILITY_TIMEOUT",
    "OUTBOX_RELAY_POLL_INTERVAL",
    "OUTBOX_LOCK_LEASE",
    "OUTBOX_RETENTION",
    "OUTBOX_METRICS_URLS",
    "OUTBOX_METRICS_PORT",
    "OUTBOX_WORKER_THREADS",
)
SECRET = "s3cr3t-Do-Not-Print-9f2c"
DB = "postgresql://app@db.example:5432/app"


@pytest.fixture()
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An environment with none of our variables, in a directory with no ``.env``."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def configuration_error(**overrides: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(**overrides)
    message = str(caught.value)
    assert message.splitlines() == [message], f"not one line: {message!r}"
    # The pydantic error (which repeats the input) is not chained for display.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    return message


# -- normalize_database_url -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql+psycopg://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgres://h/d?sslmode=require", "postgresql+psycopg://h/d?sslmode=require"),
        ("postgresql:///d?host=/run/postgresql", "postgresql+psycopg:///d?host=/run/postgresql"),
        ("sqlite:///x", "sqlite:///x"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
    ],
)
def test_accepted_database_urls_select_psycopg(url: str, expected: str) -> None:
    assert normalize_database_url(url) == expected


def test_normalization_is_idempotent() -> None:
    once = normalize_database_url("postgres://h/d")
    assert normalize_database_url(once) == once


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:p@h/d",
        "postgresql+psycopg2://h/d",
        "postgresql+asyncpg://h/d",
        "",
        "h:5432/d",
        "postgres",
        "postgres:/h/d",
        "postgres://",
        "://h/d",
    ],
)
def test_other_database_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValueError, match=r"postgres://, postgresql:// or sqlite://") as caught:
        normalize_database_url(url)
    assert "\n" not in str(caught.value)


def test_rejection_does_not_repeat_the_url() -> None:
    with pytest.raises(ValueError) as caught:
        normalize_database_url("mysql://u:hunter2@h/d")
    assert "hunter2" not in str(caught.value)


# -- load_settings: sources -----------------------------------------------------------


def test_environment_is_read_and_defaults_fill_the_rest(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", "postgres://app@db/app")
    settings = load_settings()
    assert settings.database_url == "postgresql+psycopg://app@db/app"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.getstream_api_key is None
    assert settings.getstream_api_secret is None
    assert settings.getstream_app_id is None
    assert settings.stream_chat_url is None


def test_every_variable_is_read(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", DB)
    env.setenv("REDIS_URL", "rediss://cache:6380/1")
    env.setenv("GETSTREAM_API_KEY", "key123")
    env.setenv("GETSTREAM_API_SECRET", SECRET)
    env.setenv("GETSTREAM_APP_ID", "4242")
    env.setenv("STREAM_CHAT_URL", "http://127.0.0.1:8900")
    settings = load_settings()
    assert settings.database_url == "postgresql+psycopg://app@db.example:5432/app"
    assert settings.redis_url == "rediss://cache:6380/1"
    assert settings.getstream_api_key == "key123"
    assert settings.getstream_api_secret is not None
    assert settings.getstream_api_secret.get_secret_value() == SECRET
    assert settings.getstream_app_id == "4242"
    assert settings.stream_chat_url == "http://127.0.0.1:8900"


def test_database_url_surrounding_whitespace_is_ignored(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", f"  {DB}\n")
    assert load_settings().database_url == "postgresql+psycopg://app@db.example:5432/app"


@pytest.mark.parametrize("redis_url", ["redis://r/0", "rediss://r/0", "unix:///tmp/redis.sock"])
def test_redis_url_schemes_accepted(env: pytest.MonkeyPatch, redis_url: str) -> None:
    env.setenv("DATABASE_URL", DB)
    env.setenv("REDIS_URL", redis_url)
    assert load_settings().redis_url == redis_url


def test_dotenv_in_the_working_directory_is_read(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Given a .env file and an empty environment
    (tmp_path / ".env").write_text(
        "\n".join(
            [
                "# comment",
                "DATABASE_URL=postgres://fromfile@db/app",
                "GETSTREAM_API_KEY=filekey",
                f"GETSTREAM_API_SECRET={SECRET}",
                "UNRELATED_SETTING=whatever",
            ]
        )
        + "\n"
    )
    # When settings load
    settings = load_settings()
    # Then the file's values are used (and unrelated ones ignored)
    assert settings.database_url == "postgresql+psycopg://fromfile@db/app"
    assert settings.stream_credentials() == ("filekey", SECRET)


def test_environment_beats_dotenv(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DATABASE_URL=postgres://fromfile@db/app\n")
    env.setenv("DATABASE_URL", "postgres://fromenv@db/app")
    assert load_settings().database_url == "postgresql+psycopg://fromenv@db/app"


def test_overrides_beat_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", "postgres://fromenv@db/app")
    settings = load_settings(database_url="sqlite:///override.db")
    assert settings.database_url == "sqlite:///override.db"


def test_settings_built_directly_read_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", DB)
    assert Settings().database_url == "postgresql+psycopg://app@db.example:5432/app"  # type: ignore[call-arg]


# -- load_settings: errors ------------------------------------------------------------


def test_missing_database_url_is_one_line_naming_it(env: pytest.MonkeyPatch) -> None:
    message = configuration_error()
    assert message == "DATABASE_URL is not set"


def test_missing_database_url_is_a_stream_outbox_error(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(StreamOutboxError):
        load_settings()


def test_empty_dotenv_does_not_supply_database_url(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("REDIS_URL=redis://r/0\n")
    assert configuration_error() == "DATABASE_URL is not set"


@pytest.mark.parametrize("url", ["mysql://x", "", "   ", "no-scheme", "postgres://"])
def test_malformed_database_url_is_one_line_naming_it(env: pytest.MonkeyPatch, url: str) -> None:
    env.setenv("DATABASE_URL", url)
    message = configuration_error()
    assert message.startswith("DATABASE_URL ")
    assert "postgres://" in message
    assert "Value error" not in message


def test_malformed_database_url_override_names_the_variable(env: pytest.MonkeyPatch) -> None:
    message = configuration_error(database_url="mysql://x")
    assert message.startswith("DATABASE_URL ")


@pytest.mark.parametrize("redis_url", ["http://r:6379", "localhost:6379", ""])
def test_malformed_redis_url_is_named(env: pytest.MonkeyPatch, redis_url: str) -> None:
    env.setenv("DATABASE_URL", DB)
    env.setenv("REDIS_URL", redis_url)
    message = configuration_error()
    assert message == "REDIS_URL must be a redis://, rediss:// or unix:// URL"


@pytest.mark.parametrize("stream_url", ["ftp://chat", "chat.example", "127.0.0.1:8900"])
def test_malformed_stream_chat_url_is_named(env: pytest.MonkeyPatch, stream_url: str) -> None:
    env.setenv("DATABASE_URL", DB)
    env.setenv("STREAM_CHAT_URL", stream_url)
    message = configuration_error()
    assert message == "STREAM_CHAT_URL must be an http:// or https:// URL"


@pytest.mark.parametrize("rate", ["ten per minute", "10", "10 per fortnight", ""])
def test_malformed_dashboard_lockout_is_named(env: pytest.MonkeyPatch, rate: str) -> None:
    env.setenv("DATABASE_URL", DB)
    env.setenv("OUTBOX_DASHBOARD_LOCKOUT", rate)
    message = configuration_error()
    assert message.startswith("OUTBOX_DASHBOARD_LOCKOUT "), message
    assert "10 per 5 minutes" in message


def test_malformed_stream_chat_url_override_is_named(env: pytest.MonkeyPatch) -> None:
    message = configuration_error(database_url=DB, stream_chat_url="ftp://chat")
    assert message.startswith("STREAM_CHAT_URL ")


def test_malformed_value_is_not_echoed(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", "mysql://root:hunter2@db/app")
    assert "hunter2" not in configuration_error()


# -- typed values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("300", 300), ("0.5", 0.5), ("5m", 300), ("2h", 7200), ("1h30m", 5400), ("PT5M", 300)],
)
def test_durations_take_seconds_units_or_iso(
    env: pytest.MonkeyPatch, text: str, seconds: float
) -> None:
    env.setenv("DATABASE_URL", DB)
    env.setenv("OUTBOX_VISIBILITY_TIMEOUT", text)
    assert load_settings().visibility_timeout == timedelta(seconds=seconds)


def test_duration_defaults(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", DB)
    settings = load_settings()
    assert settings.retention == timedelta(days=7)
    assert settings.lock_lease == timedelta(minutes=2)
    assert settings.stream_timeout == timedelta(seconds=6)


@pytest.mark.parametrize(
    ("variable", "text"),
    [
        ("OUTBOX_LOCK_LEASE", "0"),
        ("OUTBOX_RETENTION", "-5"),
        ("OUTBOX_RETENTION", "a week"),
        ("OUTBOX_RELAY_POLL_INTERVAL", "7x"),
        ("STREAM_CHAT_TIMEOUT", ""),
    ],
)
def test_malformed_durations_are_named(env: pytest.MonkeyPatch, variable: str, text: str) -> None:
    env.setenv("DATABASE_URL", DB)
    env.setenv(variable, text)
    assert configuration_error().startswith(f"{variable} ")


def test_rate_limits_are_a_table_of_whole_numbers(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", DB)
    env.setenv("OUTBOX_RATE_LIMITS", " UpdateUsers=600, GetOrCreateChannel = 10000 ,")
    assert load_settings().rate_limits == {"UpdateUsers": 600, "GetOrCreateChannel": 10_000}


def test_rate_limits_as_json(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", DB)
    env.setenv("OUTBOX_RATE_LIMITS", '{"SendMessage": 1000}')
    assert load_settings().rate_limits == {"SendMessage": 1000}


def test_no_rate_limits_by_default(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", DB)
    assert load_settings().rate_limits == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("UpdateUsers", "OUTBOX_RATE_LIMITS 'UpdateUsers' is not Endpoint=calls_per_minute"),
        ("=5", "OUTBOX_RATE_LIMITS '=5' is not Endpoint=calls_per_minute"),
        ("UpdateUsers=0", "OUTBOX_RATE_LIMITS UpdateUsers: Input should be greater than 0"),
        ("UpdateUsers=many", "OUTBOX_RATE_LIMITS UpdateUsers: Input should be a valid integer"),
        ("{not json", "OUTBOX_RATE_LIMITS is not a JSON object of Endpoint: calls_per_minute"),
    ],
)
def test_malformed_rate_limits_are_named(env: pytest.MonkeyPatch, text: str, expected: str) -> None:
    env.setenv("DATABASE_URL", DB)
    env.setenv("OUTBOX_RATE_LIMITS", text)
    assert configuration_error().startswith(expected)


def test_metrics_urls_are_a_comma_separated_list(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", DB)
    env.setenv("OUTBOX_METRICS_URLS", "http://w1:9191/metrics, http://w2:9191/metrics,")
    assert load_settings().metrics_urls == ["http://w1:9191/metrics", "http://w2:9191/metrics"]


# -- flags over variables -------------------------------------------------------------


def test_a_command_line_flag_wins_over_its_variable(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", DB)
    env.setenv("OUTBOX_METRICS_PORT", "9100")
    env.setenv("OUTBOX_WORKER_THREADS", "3")
    flagged = settings_with(metrics_port=0, worker_threads=12)
    assert (flagged.metrics_port, flagged.worker_threads) == (0, 12)
    unflagged = settings_with(metrics_port=None, worker_threads=None)
    assert (unflagged.metrics_port, unflagged.worker_threads) == (9100, 3)


def test_a_malformed_flag_is_named_like_its_variable(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", DB)
    with pytest.raises(ConfigurationError, match=r"^OUTBOX_WORKER_THREADS "):
        settings_with(worker_threads=0)


# -- secrecy --------------------------------------------------------------------------


def test_secret_never_printed(env: pytest.MonkeyPatch) -> None:
    # Given settings holding the Stream secret
    env.setenv("DATABASE_URL", DB)
    env.setenv("GETSTREAM_API_KEY", "key123")
    env.setenv("GETSTREAM_API_SECRET", SECRET)
    settings = load_settings()
    # Then none of the usual renderings show it
    renderings = [
        repr(settings),
        str(settings),
        f"{settings}",
        settings.model_dump_json(),
        repr(settings.model_dump()),
        repr(settings.getstream_api_secret),
        str(settings.getstream_api_secret),
    ]
    for rendering in renderings:
        assert SECRET not in rendering
    # But the credentials hand it over
    assert settings.stream_credentials() == ("key123", SECRET)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_URL", "http://r"),
        ("STREAM_CHAT_URL", "ftp://chat"),
        ("DATABASE_URL", "mysql://x"),
    ],
)
def test_secret_not_in_error_of_a_malformed_setting(
    env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    env.setenv("DATABASE_URL", DB)
    env.setenv("GETSTREAM_API_SECRET", SECRET)
    env.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert variable in str(caught.value)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


def test_secret_from_dotenv_not_in_error(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"GETSTREAM_API_SECRET={SECRET}\nREDIS_URL=nope\n")
    env.setenv("DATABASE_URL", DB)
    message = configuration_error()
    assert message.startswith("REDIS_URL ")
    assert SECRET not in message


# -- stream_credentials ---------------------------------------------------------------


def test_credentials_need_the_key(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", DB)
    env.setenv("GETSTREAM_API_SECRET", SECRET)
    settings = load_settings()
    with pytest.raises(ConfigurationError) as caught:
        settings.stream_credentials()
    assert str(caught.value) == "GETSTREAM_API_KEY is not set"
    assert SECRET not in str(caught.value)


def test_credentials_need_a_non_empty_key(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", DB)
    env.setenv("GETSTREAM_API_KEY", "")
    env.setenv("GETSTREAM_API_SECRET", SECRET)
    with pytest.raises(ConfigurationError, match=r"^GETSTREAM_API_KEY is not set$"):
        load_settings().stream_credentials()


def test_credentials_need_the_secret(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", DB)
    env.setenv("GETSTREAM_API_KEY", "key123")
    with pytest.raises(ConfigurationError, match=r"^GETSTREAM_API_SECRET is not set$"):
        load_settings().stream_credentials()


def test_credentials_need_a_non_empty_secret(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", DB)
    env.setenv("GETSTREAM_API_KEY", "key123")
    env.setenv("GETSTREAM_API_SECRET", "")
    with pytest.raises(ConfigurationError, match=r"^GETSTREAM_API_SECRET is not set$"):
        load_settings().stream_credentials()


def test_missing_key_is_reported_before_missing_secret(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", DB)
    with pytest.raises(ConfigurationError, match=r"^GETSTREAM_API_KEY is not set$"):
        load_settings().stream_credentials()


# -- errors ---------------------------------------------------------------------------


def test_errors_default_to_their_docstring() -> None:
    assert str(StreamOutboxError()) == "stream-outbox failed."
    assert str(ConfigurationError()) == "A setting is missing or malformed."
    assert str(ConfigurationError("X is not set")) == "X is not set"
