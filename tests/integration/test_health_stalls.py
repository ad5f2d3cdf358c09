"""Readiness against dependencies that accept a connection and then never answer.

A stalled socket (a PostgreSQL that finished the handshake and then went quiet, a Redis
that accepts and says nothing) must make a probe answer "not ready" within its
timeout, and must not hold the next probe behind it. The stand-ins are real TCP
listeners on localhost; no real server is stopped.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from stream_outbox.worker.health import Readiness, Report, check_database, check_redis
from stream_outbox.worker.health.checks import Check
from stream_outbox.worker.settings import Settings

TIMEOUT = 1.0  # each dependency's time to answer, in these tests
JOIN = 30.0  # how long a test waits for a probe before calling it hung (generous)


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def _startup(conn: socket.socket) -> None:
    """Read the client's startup packet (declining SSL first where it asks), then say
    the session is ready, as PostgreSQL does with trust authentication."""
    while True:
        length = struct.unpack("!I", conn.recv(4, socket.MSG_WAITALL))[0]
        body = conn.recv(length - 4, socket.MSG_WAITALL)
        if struct.unpack("!I", body[:4])[0] not in (80877103, 80877104):  # SSL, GSS
            break
        conn.sendall(b"N")
    parameters = {
        "server_version": "16.0",
        "server_encoding": "UTF8",
        "client_encoding": "UTF8",
        "standard_conforming_strings": "on",
        "integer_datetimes": "on",
        "DateStyle": "ISO, MDY",
    }
    answer = _message(b"R", struct.pack("!I", 0))  # AuthenticationOk
    for name, value in parameters.items():
        answer += _message(b"S", f"{name}\0{value}\0".encode())
    answer += _message(b"K", struct.pack("!II", 1, 2)) + _message(b"Z", b"I")
    conn.sendall(answer)


class Listener:
    """A TCP listener on localhost that accepts every connection, runs ``greet`` on it,
    then holds it open and says nothing more."""

    def __init__(self, greet: Callable[[socket.socket], None] = lambda conn: None) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._greet, self._held = greet, list[socket.socket]()
        self._lock, self._closed = threading.Lock(), False
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, name="stalled-listener", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._held.append(conn)
            threading.Thread(target=self._greet_quietly, args=(conn,), daemon=True).start()

    def _greet_quietly(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the client gave up first (or the test is over)
            self._greet(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._server.close()
            for conn in self._held:
                conn.close()


@pytest.fixture()
def stalled_postgres() -> Iterator[str]:
    """A database URL whose server finishes the handshake, then never answers a query."""
    listener = Listener(_startup)
    yield f"postgresql+psycopg://app@127.0.0.1:{listener.port}/app"
    listener.close()


@pytest.fixture()
def silent_postgres() -> Iterator[str]:
    """A database URL whose server accepts the connection and never says a word."""
    listener = Listener()
    yield f"postgresql+psycopg://app@127.0.0.1:{listener.port}/app"
    listener.close()


@pytest.fixture()
def silent_redis() -> Iterator[str]:
    """A Redis URL whose server accepts the connection and never answers."""
    listener = Listener()
    yield f"redis://127.0.0.1:{listener.port}/0"
    listener.close()


def in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Start ``call`` in a daemon thread; its result lands in the list."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    return thread, result


def finished(call: Callable[[], object]) -> object:
    """``call``'s result, failing the test where it has not returned within ``JOIN``."""
    thread, result = in_thread(call)
    thread.join(JOIN)
    assert not thread.is_alive(), f"no answer in {JOIN:g} s: the check hangs"
    return result[0]


def test_a_database_that_stalls_after_the_handshake_fails_its_check_in_time(
    stalled_postgres: str,
) -> None:
    # Given a server that lets the connection in and then never answers a query,
    # When the database check runs, Then it returns, not ok, saying it had no answer
    check = finished(lambda: check_database(stalled_postgres, TIMEOUT))
    assert check == Check("database", False, f"no answer within {TIMEOUT:g} s")


def test_a_database_that_never_says_a_word_fails_its_check_in_time(
    silent_postgres: str,
) -> None:
    check = finished(lambda: check_database(silent_postgres, TIMEOUT))
    assert isinstance(check, Check)
    assert (check.name, check.ok) == ("database", False)


def test_a_redis_that_never_answers_fails_its_check_in_time(silent_redis: str) -> None:
    check = finished(lambda: check_redis(silent_redis, TIMEOUT))
    assert isinstance(check, Check)
    assert (check.name, check.ok) == ("redis", False)


def test_a_stalled_probe_holds_no_other_probe_behind_it(
    stalled_postgres: str, silent_redis: str
) -> None:
    # Given readiness over a database and a Redis that both stall (no Stream credentials)
    settings = Settings(database_url=stalled_postgres, redis_url=silent_redis)
    readiness = Readiness(settings, timeout=TIMEOUT, require_stream=False)

    # When two probes come at once
    first, first_report = in_thread(readiness.check)
    second, second_report = in_thread(readiness.check)

    # Then both return, each "not ready" naming the database and Redis
    for thread in (first, second):
        thread.join(JOIN)
        assert not thread.is_alive(), "a probe waits behind a stalled one"
    for [report] in (first_report, second_report):
        assert isinstance(report, Report)
        assert [c.name for c in report.checks if not c.ok] == ["database", "redis"]

    # And a probe after them answers too, however long the stalled sockets stay open
    report = finished(readiness.check)
    assert isinstance(report, Report) and not report.ok
    readiness.close()
