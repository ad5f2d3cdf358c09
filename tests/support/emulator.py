"""The Stream emulator in a process of its own (its own GIL), for the benchmarks.

    python -m tests.support.emulator [--latency-ms 0] [--rate-limits '{"SendMessage": 1000}']
        [--stream-limits]

Without ``--stream-limits`` only the ``--rate-limits`` given apply (per window, no
per-second limit): the benchmarks measure the pipeline, or pace it with their own table.
Prints ``listening on PORT`` once it serves; stops on SIGTERM or SIGINT.
:class:`RemoteEmulator` starts one and drives it over HTTP. The tests' emulator runs in
their own process (the ``emulator`` fixture).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from stream_outbox.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator
from tests.support.processes import start, stop, wait_for_line

__all__ = ["RemoteEmulator", "remote_emulator"]


class RemoteEmulator:
    """The emulator in a process of its own, driven over HTTP."""

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
            "tests.support.emulator",
            "--latency-ms",
            str(latency_ms),
            "--window-seconds",
            str(window_seconds),
            "--rate-limits",
            json.dumps(dict(rate_limits or {})),
            *(["--stream-limits"] if stream_limits else []),
        ]
        with self.log.open("a") as log:
            self.proc = start(args, output=log)
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

    def webhook_fault(
        self, kind: str, times: int = 1, seconds: float = 0.0, event_type: str | None = None
    ) -> None:
        """Drop, delay, duplicate or reorder the next ``times`` webhook events."""
        body = {"kind": kind, "times": times, "seconds": seconds, "event_type": event_type}
        self._admin("POST", "/faults/webhook", body)

    def webhook_attempts(self) -> list[dict[str, Any]]:
        """Every webhook attempt made (and event dropped), oldest first."""
        attempts: list[dict[str, Any]] = self._admin("GET", "/webhooks/attempts")["attempts"]
        return attempts

    def wait_webhooks(self, timeout: float = 10.0) -> bool:
        """Wait until every webhook event so far is delivered or given up on."""
        deadline = time.monotonic() + timeout
        while not self._admin("GET", "/webhooks/idle")["idle"]:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        """Stop the emulator process."""
        self._http.close()
        stop(self.proc, timeout=15, check=False)
        self.log.unlink(missing_ok=True)


@contextmanager
def remote_emulator(**options: Any) -> Iterator[RemoteEmulator]:
    """An emulator process for the block."""
    emu = RemoteEmulator(**options)
    try:
        yield emu
    finally:
        emu.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="The Stream emulator in a process of its own")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-limits", default="{}", help="JSON: endpoint -> calls per window")
    parser.add_argument("--window-seconds", type=float, default=60.0)
    parser.add_argument(
        "--stream-limits", action="store_true", help="Stream's published limits, per second too"
    )
    args = parser.parse_args()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    emulator = Emulator(
        port=0,
        latency_ms=args.latency_ms,
        rate_limits=json.loads(args.rate_limits),
        window_seconds=args.window_seconds,
        stream_limits=args.stream_limits,
    )
    with emulator:
        print(f"listening on {emulator.port}", flush=True)
        while not stopped.wait(0.5):
            pass


if __name__ == "__main__":
    main()
