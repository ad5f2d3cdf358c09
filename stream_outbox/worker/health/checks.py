"""The checks: each answers with a :class:`Check`, a name, a verdict and one line.

A check never raises for a dependency that does not answer: it says why, in one
line with no secret in it, within its timeout, even where the dependency accepted
the connection and then went quiet. Readiness runs the three at once and keeps its
answer a few seconds so probes do not hammer Stream; no probe waits behind another.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from stream_outbox.worker.errors import ConfigurationError, StreamOutboxError
from stream_outbox.worker.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

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

TIMEOUT = 3.0  # seconds each dependency has to answer (OUTBOX_HEALTH_TIMEOUT)
CACHE_SECONDS = 5.0  # how long a readiness answer is served again
_GRACE = 1.0  # how long a probe waits past the checks' timeout for their answers


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


class _Deadline:
    """Shuts a connection's socket down once the monotonic time ``at`` has passed, so
    that a read from a server that stopped answering returns (an error) instead of
    waiting for ever. It holds a duplicate of the socket: the driver may have closed
    its own, and the number gone to another socket, by the time it fires."""

    def __init__(self, at: float) -> None:
        self._at = at
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._timer: threading.Timer | None = None
        self.fired = False

    def watch(self, fd: int) -> None:
        """Start watching the socket ``fd``."""
        with self._lock:
            self._socket = socket.socket(fileno=os.dup(fd))
            self._timer = threading.Timer(max(0.0, self._at - time.monotonic()), self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._socket is not None:
                self.fired = True
                with contextlib.suppress(OSError):
                    self._socket.shutdown(socket.SHUT_RDWR)

    def disarm(self) -> None:
        """Stop watching; the duplicate socket is closed."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def _bounded(url: URL, timeout: float) -> dict[str, Any]:
    """The connect arguments that bound a PostgreSQL connection's wait on its own:
    ``connect_timeout`` (whole seconds, two at least) and ``statement_timeout``,
    added to the URL's own ``options``."""
    if url.get_backend_name() != "postgresql":
        return {}
    own = f"-c statement_timeout={max(1, round(timeout * 1000))}"
    options = url.query.get("options")
    return {
        "connect_timeout": max(2, math.ceil(timeout)),
        "options": f"{options} {own}" if isinstance(options, str) and options else own,
    }


def check_database(url: str, timeout: float = TIMEOUT) -> Check:
    """``SELECT 1`` on a connection of its own, within ``timeout``: the connection's and
    the statement's own timeouts, and a deadline that shuts the socket down where the
    server accepted the connection and then stopped answering."""
    from sqlalchemy import create_engine, event, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    parsed = make_url(url)
    deadline = _Deadline(time.monotonic() + timeout)
    engine = create_engine(url, poolclass=NullPool, connect_args=_bounded(parsed, timeout))

    def connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        connection = dialect.connect(*cargs, **cparams)
        fd = getattr(getattr(connection, "pgconn", None), "socket", None)  # psycopg's
        if isinstance(fd, int):
            deadline.watch(fd)
        return connection

    event.listen(engine, "do_connect", connect)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        detail = f"no answer within {timeout:g} s" if deadline.fired else _first_line(exc)
        return Check("database", False, _scrub(detail, [parsed.password]))
    finally:
        deadline.disarm()
        engine.dispose()
    return Check("database", True, "ok")


def check_redis(url: str, timeout: float = TIMEOUT) -> Check:
    """``PING`` within ``timeout`` to connect and ``timeout`` to answer, tried once."""
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
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


class _Round:
    """One pass of the checks, each on a daemon thread of its own (a check that hangs
    holds its thread and nothing else), answered by ``deadline`` however far it got."""

    def __init__(self, calls: dict[str, Callable[[], Check]], deadline: float, late: str):
        self._deadline, self._late = deadline, late
        self._futures: dict[str, Future[Check]] = {name: Future() for name in calls}
        for name, call in calls.items():
            threading.Thread(
                target=_settle,
                args=(self._futures[name], name, call),
                name=f"readiness-{name}",
                daemon=True,
            ).start()

    def done(self) -> bool:
        """Every check has answered."""
        return all(future.done() for future in self._futures.values())

    def report(self) -> tuple[Report, bool]:
        """Each check's answer, waited for until the deadline (``late`` for one that has
        none by then); whether every check answered."""
        checks, complete = [], True
        for name, future in self._futures.items():
            try:
                checks.append(future.result(timeout=max(0.0, self._deadline - time.monotonic())))
            except FutureTimeout:
                checks.append(Check(name, False, self._late))
                complete = False
        return Report(tuple(checks)), complete


def _settle(future: Future[Check], name: str, call: Callable[[], Check]) -> None:
    try:
        future.set_result(call())
    except Exception as exc:  # checks say why rather than raise; should one raise anyway
        future.set_result(Check(name, False, _first_line(exc)))


class Readiness:
    """Database, Redis and Stream, checked at once and cached ``cache_seconds``.

    Each check has ``timeout`` seconds (default: the settings' ``health_timeout``); a
    probe answers within about a second more, without the checks that have not
    answered by then ("no answer within ..."). Probes that come while a round of
    checks runs share it, and wait for it outside any lock: none waits behind a
    stalled one, and a stalled check is not started again before it ends.

    ``require_stream=False``: without Stream credentials the Stream check is skipped
    (a relay may run without them); with ``True`` a missing one raises
    :class:`ConfigurationError` here.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        timeout: float | None = None,
        cache_seconds: float = CACHE_SECONDS,
        require_stream: bool = True,
    ) -> None:
        if timeout is None:
            timeout = settings.health_timeout.total_seconds()
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
        self._lock = threading.Lock()  # guards the two below; never held while waiting
        self._cached: tuple[float, Report] | None = None
        self._round: _Round | None = None

    def check(self) -> Report:
        """The report, from the cache when it is younger than ``cache_seconds``."""
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self._ttl:
                return self._cached[1]
            if self._round is None or self._round.done():
                late = f"no answer within {self._timeout:g} s"
                self._round = _Round(self._calls(), now + self._timeout + _GRACE, late)
            current = self._round
        report, complete = current.report()
        if complete:
            with self._lock:
                self._cached = (time.monotonic(), report)
        return report

    def _calls(self) -> dict[str, Callable[[], Check]]:
        settings, timeout = self._settings, self._timeout
        return {
            "database": lambda: check_database(settings.database_url, timeout),
            "redis": lambda: check_redis(settings.redis_url, timeout),
            "stream": self._stream,
        }

    def _stream(self) -> Check:
        if self._gateway is None:
            return Check("stream", True, self._skip_stream)
        return check_stream(self._gateway, self._secrets)

    def close(self) -> None:
        """Nothing to let go: the checks' threads are daemons, each ending with its
        timeout."""


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
