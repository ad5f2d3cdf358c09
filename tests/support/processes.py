"""Processes of tests, benchmarks and chaos runs: started, waited for, stopped.

Every command starts in a process group of its own, so that a stop reaches what it
started too (honcho's processes, a relay's), never the test run. A process still
running when this interpreter exits is stopped then, also when a run is interrupted.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import requests

from tests.support.settings import BIN, ROOT

__all__ = [
    "Process",
    "Run",
    "free_port",
    "kill",
    "script",
    "serving",
    "start",
    "started_processes",
    "stop",
    "wait_for",
    "wait_for_line",
]

# A command run to its end: ``run(*args, **env)``, as the ``cli`` fixtures give it
Run = Callable[..., subprocess.CompletedProcess[str]]

_RUNNING: list[subprocess.Popen[str]] = []


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def script(name: str, *args: str) -> list[str]:
    """The command line of one of the environment's scripts (``stream-outbox``, ``honcho``)."""
    return [str(BIN / name), *args]


def start(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    output: IO[str] | None = None,
) -> subprocess.Popen[str]:
    """Start ``command`` in a process group of its own; its output (stderr too) piped, or
    written to ``output``."""
    process = subprocess.Popen(
        list(command),
        env=None if env is None else dict(env),
        cwd=cwd,
        stdout=output if output is not None else subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    _RUNNING[:] = [p for p in _RUNNING if p.poll() is None]
    _RUNNING.append(process)
    return process


def _signal(process: subprocess.Popen[str], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is gone
        os.killpg(process.pid, sig)


def kill(process: subprocess.Popen[str]) -> None:
    """SIGKILL to the process's group: no shutdown, whatever it held is stranded."""
    _signal(process, signal.SIGKILL)
    process.wait()
    _forget(process)


def stop(process: subprocess.Popen[str], timeout: float = 30.0, *, check: bool = True) -> str:
    """SIGTERM to the process's group, and what it printed when its output was piped.

    One that has not ended within ``timeout`` seconds is killed (SIGKILL to the group);
    with ``check`` that fails, since stopping cleanly is part of what the tests check.
    """
    _signal(process, signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal(process, signal.SIGKILL)
        out, _ = process.communicate()
        if check:
            raise AssertionError(
                f"{process.args!r} did not stop within {timeout:g} s\n{out or ''}"
            ) from None
    finally:
        _forget(process)
    return out or ""


def _forget(process: subprocess.Popen[str]) -> None:
    if process in _RUNNING:
        _RUNNING.remove(process)


@atexit.register
def _stop_all() -> None:
    for process in list(_RUNNING):
        if process.poll() is None:
            stop(process, timeout=15, check=False)


@contextmanager
def started_processes(
    env: Mapping[str, str] | None = None, cwd: Path | str | None = None
) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``launch(*command, **more_env)`` starting commands with ``env`` and ``cwd``; on
    exit, every one still running is stopped."""
    started: list[subprocess.Popen[str]] = []

    def launch(*command: str, **more_env: str) -> subprocess.Popen[str]:
        environ = None if env is None and not more_env else {**(env or os.environ), **more_env}
        process = start(command, env=environ, cwd=cwd)
        started.append(process)
        return process

    try:
        yield launch
    finally:
        for process in started:
            stop(process, check=False)
            if process.stdout is not None:
                process.stdout.close()


def wait_for(
    condition: Callable[[], object],
    what: str,
    *,
    timeout: float = 30.0,
    process: subprocess.Popen[str] | None = None,
    interval: float = 0.05,
) -> None:
    """Poll until ``condition()`` is true; fail naming ``what`` after ``timeout`` seconds,
    or as soon as ``process`` has ended (with what it printed, when piped)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            out = process.communicate()[0] if process.stdout is not None else ""
            raise AssertionError(
                f"{what}: {process.args!r} ended ({process.returncode}) first\n{out or ''}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def wait_for_line(
    log: Path, text: str, process: subprocess.Popen[str], timeout: float = 60.0
) -> None:
    """Wait until ``text`` appears in the log a process writes (it says it is ready)."""

    def seen() -> bool:
        return text in log.read_text(errors="replace")

    try:
        wait_for(seen, repr(text), timeout=timeout, process=process, interval=0.02)
    except AssertionError as exc:
        tail = log.read_text(errors="replace")[-2000:]
        raise AssertionError(f"{exc}; the log ends:\n{tail}") from None


def serving(process: subprocess.Popen[str], url: str, timeout: float = 30.0) -> None:
    """Wait until ``url`` answers (any status), failing at once if the process ends."""

    def answers() -> bool:
        try:
            http.get(url, timeout=1)
        except requests.ConnectionError:
            return False
        return True

    with requests.Session() as http:
        http.trust_env = False  # no proxy between a test and its own server
        wait_for(answers, url, timeout=timeout, process=process, interval=0.1)


class Process:
    """A command that a run starts, kills and starts again (a chaos run's relay or
    workers), its output appended to ``log`` with a line at each start."""

    def __init__(
        self, name: str, command: Sequence[str], env: Mapping[str, str], log: IO[str]
    ) -> None:
        self.name, self.command, self.env, self.log = name, list(command), dict(env), log
        self.process: subprocess.Popen[str] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.log.write(f"--- {self.name} start {self.starts} ---\n")
        self.log.flush()
        self.process = start(self.command, env=self.env, cwd=ROOT, output=self.log)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, in-flight jobs and held locks stranded."""
        if self.running:
            assert self.process is not None
            kill(self.process)

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 30 s)."""
        if self.running:
            assert self.process is not None
            stop(self.process, check=False)
