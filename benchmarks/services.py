"""The benchmarks' moving parts: an emulator process, pipeline subprocesses, Redis keys.

Every run gets a Redis key prefix of its own (``OUTBOX_REDIS_PREFIX``) and a scratch
database, so benchmarks never touch other runs' data. Subprocesses are stopped on
exit (SIGTERM, then SIGKILL), also when the run is interrupted.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from redis import Redis

from stream_outbox.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET
from stream_outbox.worker.runtime import delete_prefixed_keys

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
BIN = Path(sys.executable).parent
_RUNNING: list[subprocess.Popen[bytes]] = []


def _stop_all() -> None:
    for proc in list(_RUNNING):
        stop_process(proc)


atexit.register(_stop_all)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, wait, then SIGKILL; forget the process."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in _RUNNING:
        _RUNNING.remove(proc)


def spawn(args: list[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a subprocess whose output goes to ``log_path``; it is stopped at exit."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=log, stderr=log)
    _RUNNING.append(proc)
    return proc


def wait_for_line(log_path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until ``text`` appears in the log (the process says it is ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log_path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{proc.args!r} not ready ({text!r} not seen):\n{tail}")


class RemoteEmulator:
    """The Stream emulator in a process of its own (its own GIL), driven over HTTP."""

    def __init__(
        self,
        latency_ms: float = 0.0,
        rate_limits: Mapping[str, int] | None = None,
        window_seconds: float = 60.0,
        stream_limits: bool = False,
    ) -> None:
        self.api_key, self.api_secret = DEFAULT_API_KEY, DEFAULT_API_SECRET
        self.log = Path(tempfile.mkstemp(prefix="bench-emulator-", suffix=".log")[1])
        args = [
            sys.executable,
            "-m",
            "benchmarks.emulator_proc",
            "--latency-ms",
            str(latency_ms),
            "--window-seconds",
            str(window_seconds),
            "--rate-limits",
            json.dumps(dict(rate_limits or {})),
            *(["--stream-limits"] if stream_limits else []),
        ]
        self.proc = spawn(args, {}, self.log)
        wait_for_line(self.log, "listening on ", self.proc, 30)
        port = self.log.read_text().split("listening on ", 1)[1].split()[0]
        self.base_url = f"http://127.0.0.1:{port}"
        self._http = requests.Session()
        self._http.trust_env = False

    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, f"{self.base_url}/_emulator{path}", json=body)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        """Empty state, faults, counters and rate-limit usage."""
        self._admin("POST", "/reset")

    def request_counts(self) -> dict[str, Any]:
        """``{"counts", "by_status", "total"}``."""
        result: dict[str, Any] = self._admin("GET", "/requests")
        return result

    def request_log(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """Answered calls with wall-clock ``received`` / ``answered``."""
        calls: list[dict[str, Any]] = self._admin("POST", "/requests/log", {"endpoint": endpoint})[
            "calls"
        ]
        return calls

    def reset_request_counts(self) -> None:
        """Forget the request log only."""
        self._admin("POST", "/requests/reset")

    def state(self) -> dict[str, Any]:
        """Users, channels and messages."""
        result: dict[str, Any] = self._admin("GET", "/state")
        return result

    def close(self) -> None:
        """Stop the emulator process."""
        self._http.close()
        stop_process(self.proc)
        self.log.unlink(missing_ok=True)


@contextmanager
def remote_emulator(**options: Any) -> Iterator[RemoteEmulator]:
    """An emulator process for the block."""
    emu = RemoteEmulator(**options)
    try:
        yield emu
    finally:
        emu.close()


def new_prefix(name: str) -> str:
    """A Redis key prefix no other run uses."""
    return f"stream_outbox_bench_{name}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def clear_redis(prefix: str, url: str = REDIS_URL) -> None:
    """Delete every key of a run."""
    client = Redis.from_url(url)
    try:
        delete_prefixed_keys(client, prefix)
    finally:
        client.close()


def pipeline_env(
    database_url: str, emu: RemoteEmulator, prefix: str, **extra: str
) -> dict[str, str]:
    """The environment of ``stream-outbox relay`` / ``worker`` for one run."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "OUTBOX_REDIS_PREFIX": prefix,
        "GETSTREAM_API_KEY": emu.api_key,
        "GETSTREAM_API_SECRET": emu.api_secret,
        "STREAM_CHAT_URL": emu.base_url,
        "OUTBOX_MIN_BACKOFF_MS": "100",
        "OUTBOX_MAX_BACKOFF_MS": "2000",
        # Unpaced unless a run sets limits: a drain measures the pipeline, not Stream's table
        "OUTBOX_STREAM_LIMITS": "false",
    }
    env.update(extra)
    return env


class Processes:
    """Relay and worker subprocesses of one run, with their logs in a temporary folder."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.folder = Path(tempfile.mkdtemp(prefix="bench-procs-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], ready: str, **env: str) -> Path:
        """Start a process and wait until its log shows ``ready``; returns the log's path."""
        log = self.folder / f"{name}.log"
        proc = spawn(args, {**self.env, **env}, log)
        self.procs.append(proc)
        wait_for_line(log, ready, proc, 60)
        return log

    def relay(self, *, listen: bool = True) -> Path:
        """The real ``stream-outbox relay`` (or the same relay with LISTEN off)."""
        if listen:
            args = [str(BIN / "stream-outbox"), "relay"]
        else:
            args = [sys.executable, "-m", "benchmarks.procs", "relay", "--no-listen"]
        return self.start("relay", args, "relay started")

    def worker(self, n: int = 0, **env: str) -> Path:
        """The real ``stream-outbox worker``."""
        return self.start(
            f"worker{n}", [str(BIN / "stream-outbox"), "worker"], "worker started", **env
        )

    def logs(self, prefix: str) -> str:
        """The text of every log whose name starts with ``prefix``."""
        return "".join(
            path.read_text(errors="replace") for path in sorted(self.folder.glob(f"{prefix}*.log"))
        )

    def stop(self) -> None:
        """Stop every process (SIGTERM: clean shutdown)."""
        for proc in reversed(self.procs):
            stop_process(proc)
        self.procs.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
