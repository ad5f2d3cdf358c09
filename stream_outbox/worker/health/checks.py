"""The checks: each answers with a :class:`Check`, a name, a verdict and one line.

A check never raises for a dependency that does not answer: it says why, in one
line with no secret in it. Readiness runs the three at once, each with a short
timeout, and keeps its answer a few seconds so probes do not hammer Stream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from stream_outbox.worker.errors import ConfigurationError, StreamOutboxError
from stream_outbox.worker.settings import Settings

__all__ = [
    "Check",
    "Heartbeat",
    "Readiness",
    "Report",
    "ask_liveness",
    "check_database",
    "check_redis",
    "check_stream",
    "threads_alive",
]

TIMEOUT = 3.0  # seconds each dependency has to answer
CACHE_SECONDS = 5.0  # how long a readiness answer is served again


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``detail`` is ``ok``-ish text or the reason it failed."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Report:
    """The outcome of several checks; healthy when every one is."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """Every check passed."""
        return all(check.ok for check in self.checks)

    def as_json(self, good: str, bad: str) -> dict[str, Any]:
        """``{"status": good|bad, "checks": {name: {"ok": ..., "detail": ...}}}``."""
        return {
            "status": good if self.ok else bad,
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks},
        }

    def line(self, good: str, bad: str) -> str:
        """One line: ``ready: database ok, ...`` or ``not ready: redis: <reason>``."""
        failed = [c for c in self.checks if not c.ok]
        if failed:
            return f"{bad}: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)
        return f"{good}: " + ", ".join(f"{c.name} {c.detail}" for c in self.checks)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]


def _scrub(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def check_database(url: str, timeout: float = TIMEOUT) -> Check:
    """``SELECT 1`` on a connection of its own, opened within ``timeout``."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    parsed = make_url(url)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = max(1, round(timeout))
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return Check("database", False, _scrub(_first_line(exc), [parsed.password]))
    finally:
        engine.dispose()
    return Check("database", True, "ok")


def check_redis(url: str, timeout: float = TIMEOUT) -> Check:
    """``PING`` within ``timeout``."""
    from redis import Redis

    client = Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except Exception as exc:
        password = client.connection_pool.connection_kwargs.get("password")
        return Check("redis", False, _scrub(_first_line(exc), [password]))
    finally:
        client.close()
    return Check("redis", True, "ok")


class _LimitsReader(Protocol):
    def rate_limits(self) -> dict[str, int]: ...


def check_stream(gateway: _LimitsReader, secrets: Sequence[str] = ()) -> Check:
    """Stream's rate limits (GetRateLimits): a cheap call every app may make."""
    try:
        gateway.rate_limits()
    except StreamOutboxError as exc:
        return Check("stream", False, _scrub(exc.describe().splitlines()[0], secrets))
    except Exception as exc:
        return Check("stream", False, _scrub(_first_line(exc), secrets))
    return Check("stream", True, "ok")


def stream_gateway(settings: Settings, timeout: float = TIMEOUT) -> _LimitsReader:
    """The gateway the settings name, with a short timeout; a :class:`ConfigurationError`
    names a missing credential."""
    from stream_outbox.worker.stream.gateway import StreamGateway

    key, secret = settings.stream_credentials()
    seconds = min(timeout, settings.stream_timeout.total_seconds())
    return StreamGateway(key, secret, base_url=settings.stream_chat_url, timeout=seconds)


class Readiness:
    """Database, Redis and Stream, checked at once and cached ``cache_seconds``.

    ``require_stream=False``: without Stream credentials the Stream check is skipped
    (a relay may run without them); with ``True`` a missing one raises
    :class:`ConfigurationError` here.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        timeout: float = TIMEOUT,
        cache_seconds: float = CACHE_SECONDS,
        require_stream: bool = True,
    ) -> None:
        self._settings, self._timeout, self._ttl = settings, timeout, cache_seconds
        self._gateway: _LimitsReader | None = None
        self._skip_stream = ""
        try:
            self._gateway = stream_gateway(settings, timeout)
        except ConfigurationError as exc:
            if require_stream:
                raise
            self._skip_stream = f"skipped: {exc}"
        secret = settings.getstream_api_secret
        self._secrets = [secret.get_secret_value()] if secret is not None else []
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="readiness")
        self._lock = threading.Lock()
        self._cached: tuple[float, Report] | None = None

    def check(self) -> Report:
        """The report, from the cache when it is younger than ``cache_seconds``."""
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self._ttl:
                self._cached = (time.monotonic(), self._run())
            return self._cached[1]

    def _run(self) -> Report:
        settings, timeout = self._settings, self._timeout
        calls: list[Callable[[], Check]] = [
            lambda: check_database(settings.database_url, timeout),
            lambda: check_redis(settings.redis_url, timeout),
            self._stream,
        ]
        futures = [self._pool.submit(call) for call in calls]
        return Report(tuple(future.result() for future in futures))

    def _stream(self) -> Check:
        if self._gateway is None:
            return Check("stream", True, self._skip_stream)
        return check_stream(self._gateway, self._secrets)

    def close(self) -> None:
        """Let the checking threads go."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class Heartbeat:
    """A loop's last pass: :meth:`beat` each pass, :meth:`check` is ok while the last
    one is younger than ``max_age`` seconds."""

    def __init__(self, name: str, max_age: float) -> None:
        self.name, self.max_age = name, max_age
        self._last: float | None = None

    def beat(self) -> None:
        """The loop passed here now."""
        self._last = time.monotonic()

    def check(self) -> Check:
        """Alive when the loop passed within ``max_age`` seconds."""
        if self._last is None:
            return Check(self.name, False, "the loop has not run yet")
        age = time.monotonic() - self._last
        if age > self.max_age:
            return Check(self.name, False, f"the loop last ran {age:.0f} s ago")
        return Check(self.name, True, f"the loop ran {age:.1f} s ago")


def ask_liveness(port: int, timeout: float = TIMEOUT, host: str = "127.0.0.1") -> Report:
    """The liveness a running relay or worker serves on its metrics port (``/healthz``)."""
    import json
    import urllib.error
    import urllib.request

    url = f"http://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            body = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
        except ValueError:
            return Report((Check("process", False, f"{url} answered HTTP {exc.code}"),))
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Report((Check("process", False, f"nothing answers at {url}: {reason}"),))
    checks = body.get("checks", {}) if isinstance(body, dict) else {}
    found = tuple(Check(n, bool(c.get("ok")), str(c.get("detail"))) for n, c in checks.items())
    return Report(found or (Check("process", False, f"{url} answered no checks"),))


def threads_alive(name: str, threads: Callable[[], Sequence[threading.Thread]]) -> Check:
    """Alive when there are threads and every one of them runs."""
    found = list(threads())
    dead = [t.name for t in found if not t.is_alive()]
    if not found:
        return Check(name, False, "no threads started")
    if dead:
        return Check(name, False, f"{len(dead)} of {len(found)} threads stopped")
    return Check(name, True, f"{len(found)} threads alive")
