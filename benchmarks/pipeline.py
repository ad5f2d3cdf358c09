"""The pipeline of one benchmark run: relay and worker subprocesses, their logs in a
temporary folder, a Redis key prefix of the run's own (deleted afterwards).

The processes, the emulator process and the scratch databases are the tests' own
(``tests/support``); processes are stopped on exit (SIGTERM, then SIGKILL), also when
the run is interrupted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.emulator import RemoteEmulator
from tests.support.processes import script, start, stop, wait_for_line
from tests.support.redis import clear_redis, new_prefix
from tests.support.settings import REDIS_URL, product_env

__all__ = ["Processes"]

# Short backoffs, and unpaced unless a run sets limits: a drain measures the pipeline,
# not Stream's table
DEFAULTS = {
    "OUTBOX_MIN_BACKOFF_MS": "100",
    "OUTBOX_MAX_BACKOFF_MS": "2000",
    "OUTBOX_STREAM_LIMITS": "false",
}


class Processes:
    """Relay and worker subprocesses of one run against ``database_url`` and ``emu``.

    ``env`` adds to (or overrides) the run's settings and ``DEFAULTS``.
    """

    def __init__(self, database_url: str, emu: RemoteEmulator, purpose: str, **env: str) -> None:
        self.prefix = new_prefix(f"stream_outbox_bench_{purpose}")
        # The caller's environment too: OUTBOX_ variables set for a run reach its processes
        self.env = {
            **os.environ,
            **product_env(
                database_url,
                REDIS_URL,
                emu.base_url,
                prefix=self.prefix,
                api_key=emu.api_key,
                api_secret=emu.api_secret,
                **{**DEFAULTS, **env},
            ),
        }
        self.folder = Path(tempfile.mkdtemp(prefix="bench-procs-"))
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, name: str, args: list[str], ready: str, **env: str) -> Path:
        """Start a process and wait until its log shows ``ready``; returns the log's path."""
        log = self.folder / f"{name}.log"
        with log.open("a") as output:
            proc = start(args, env={**self.env, **env}, output=output)
        self.procs.append(proc)
        wait_for_line(log, ready, proc, 60)
        return log

    def relay(self, *, listen: bool = True) -> Path:
        """The real ``stream-outbox relay`` (or the same relay with LISTEN off)."""
        if listen:
            args = script("stream-outbox", "relay")
        else:
            args = [sys.executable, "-m", "benchmarks.procs", "relay", "--no-listen"]
        return self.start("relay", args, "relay started")

    def worker(self, n: int = 0, **env: str) -> Path:
        """The real ``stream-outbox worker``."""
        return self.start(f"worker{n}", script("stream-outbox", "worker"), "worker started", **env)

    def logs(self, prefix: str) -> str:
        """The text of every log whose name starts with ``prefix``."""
        return "".join(
            path.read_text(errors="replace") for path in sorted(self.folder.glob(f"{prefix}*.log"))
        )

    def stop(self) -> None:
        """Stop every process (SIGTERM: clean shutdown) and delete the run's Redis keys."""
        for proc in reversed(self.procs):
            stop(proc, timeout=15, check=False)
        self.procs.clear()
        clear_redis(REDIS_URL, self.prefix)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
