"""Chaos run: the real relay and workers under load, crashed and cut off at random moments.

``python -m tests.chaos.chaos --seconds 300`` (``--seed``, ``--workers``, ``--rate``,
``--capture listeners|triggers``, ``--logs DIR`` to keep the processes' logs).

A writer thread makes random changes through the reference app's ORM sessions with
capture installed (:mod:`tests.support.app_model`): session listeners (``install``), or with
``--capture triggers`` the reference binding's database triggers on the run's
database and sessions without listeners; meanwhile ``stream-outbox relay`` and
``stream-outbox worker`` subprocesses sync them to a Stream emulator. At random
moments one of these happens:

* ``kill -9`` of a worker (restarted a moment later), or of the relay;
* a restart of Redis (a private ``redis-server`` without persistence: queues, locks and
  caches are lost; the shared Redis on 6379 is never touched);
* PostgreSQL "restarts": restarting the shared server would hit everything else on it,
  so instead the pipeline's backends on the run's scratch database are terminated
  (``pg_terminate_backend``), which is what a restart does to the pipeline's
  connections (the writer, the app, keeps its own);
* Stream trouble for a while: every call answers 503, calls hang past the SDK's
  timeout, connections drop (with or without the call carried out), or a low rate
  limit answers 429.

Then the writer stops, the faults clear, and the run waits until the outbox has
drained and the emulator holds what the database says (``worker.verify.compare``). It prints
a summary: changes written, faults injected, time to converge, rows failed (replayed,
then converged) and rows lost, which must be 0. Exit status 0 when converged.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import install
from stream_outbox.app_hooks.outbox import Status, outbox
from stream_outbox.app_hooks.reference import REFERENCE_BINDING
from stream_outbox.app_hooks.triggers import install_triggers
from stream_outbox.emulator import Emulator
from stream_outbox.worker.operations.replay import replay
from stream_outbox.worker.operations.rows import Filters
from stream_outbox.worker.store.repository import OutboxRepository
from stream_outbox.worker.verify.compare import compare
from stream_outbox.worker.verify.readers import held_from_snapshot, read_desired
from tests.support.app_model import AppModel, random_transaction
from tests.support.database import ScratchDatabase
from tests.support.outbox import status_counts
from tests.support.processes import Process, script
from tests.support.redis import PrivateRedis
from tests.support.settings import clean_environ, product_env

__all__ = ["Summary", "main", "run"]

API_KEY = "chaos-key"
API_SECRET = "chaos-secret-" + uuid.uuid4().hex  # never printed; scanned for in the logs
# The application_name of the relay's and workers' connections: the chaos run
# terminates these backends (pg_terminate_backend), never the writer's or others'.
PIPELINE_APP = "stream-outbox-chaos-pipeline"
STREAM_TIMEOUT = 1.0
FAULTS = (
    "kill -9 worker",
    "kill -9 relay",
    "redis restart",
    "postgres backends terminated",
    "stream 503s",
    "stream hangs",
    "stream drops",
    "stream 429s",
)


@dataclass
class Summary:
    """What a chaos run did and found."""

    seconds: float
    seed: int
    capture: str = "listeners"
    transactions: int = 0
    changes: int = 0
    refused: int = 0  # app transactions that failed (rolled back: nothing to sync)
    rows: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    converge_seconds: float | None = None
    rows_failed: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # why rows failed
    rows_lost: int = 0
    differences: list[str] = field(default_factory=list)
    open_rows: list[str] = field(default_factory=list)  # a sample, when not converged
    down: list[str] = field(default_factory=list)  # processes not running at the end
    users: int = 0
    channels: int = 0
    secret_in_logs: bool = False

    @property
    def converged(self) -> bool:
        return self.converge_seconds is not None and self.rows_lost == 0

    def lines(self) -> list[str]:
        faults = ", ".join(f"{name} {n}" for name, n in self.faults.most_common())
        converge = (
            f"{self.converge_seconds:.1f} s after the last fault"
            if self.converge_seconds is not None
            else "NOT converged"
        )
        return [
            f"chaos run: {self.seconds:.0f} s of load and faults, seed {self.seed}, "
            f"capture by {self.capture}",
            f"changes written: {self.transactions} transactions "
            f"({self.transactions / max(self.seconds, 1e-9):.1f}/s; {self.changes} app changes, "
            f"{self.rows} outbox rows); {self.refused} refused while backends were terminated",
            f"faults injected: {sum(self.faults.values())} ({faults})",
            f"time to converge: {converge} ({self.users} users, {self.channels} channels compared)",
            f"rows failed: {self.rows_failed}"
            + "".join(f"\n  {n} x {why}" for why, n in self.failures.most_common()),
            f"rows lost: {self.rows_lost}",
            f"API secret in the processes' logs: {'YES' if self.secret_in_logs else 'no'}",
            *(f"  difference: {d}" for d in self.differences[:20]),
            *(f"  open row: {row}" for row in self.open_rows),
            *([f"  not running at the end: {', '.join(self.down)}"] if self.down else []),
        ]


class Writer(threading.Thread):
    """The application: random transactions at ``rate`` per second until stopped."""

    def __init__(self, model: AppModel, rng: random.Random, rate: float) -> None:
        super().__init__(name="chaos-writer", daemon=True)
        self.model, self.rng, self.rate = model, rng, rate
        self.stop = threading.Event()
        self.transactions = self.refused = 0

    def run(self) -> None:
        # Poisson arrivals on a schedule: a transaction's own time does not lower the rate
        due = time.monotonic()
        while not self.stop.is_set():
            try:
                if self.model.transaction(random_transaction(self.rng)):
                    self.transactions += 1
            except DBAPIError:
                self.refused += 1  # rolled back: no change, no row
            due += self.rng.expovariate(self.rate)
            self.stop.wait(max(0.0, due - time.monotonic()))


class Chaos:
    """The services, the pipeline's processes and the fault menu of one run."""

    def __init__(self, workdir: Path, workers: int, rng: random.Random, tempo: float) -> None:
        self.rng = rng
        self.tempo = tempo  # 1: faults at full length; less for short runs
        self.workdir = workdir
        self.logs: dict[str, IO[str]] = {}
        self.db = ScratchDatabase("stream_outbox_chaos")
        self.redis = PrivateRedis(self._log("redis"))
        self.emu = Emulator(api_key=API_KEY, api_secret=API_SECRET, window_seconds=1.0)
        self.worker_count = workers
        self.processes: list[Process] = []

    def _log(self, name: str) -> IO[str]:
        self.logs[name] = open(self.workdir / f"{name}.log", "w")  # noqa: SIM115
        return self.logs[name]

    def env(self) -> dict[str, str]:
        return clean_environ(
            **product_env(
                self.db.url_for(PIPELINE_APP),
                self.redis.url,
                self.emu.base_url,
                prefix=f"chaos_{uuid.uuid4().hex[:8]}",
                api_key=API_KEY,
                api_secret=API_SECRET,
                STREAM_CHAT_TIMEOUT=str(STREAM_TIMEOUT),
                OUTBOX_WORKER_THREADS="4",
                OUTBOX_MAX_RETRIES="30",
                OUTBOX_MIN_BACKOFF_MS="100",
                OUTBOX_MAX_BACKOFF_MS="1500",
                OUTBOX_VISIBILITY_TIMEOUT="5",
                OUTBOX_RELAY_POLL_INTERVAL="0.2",
                OUTBOX_LOCK_LEASE="10",
                PYTHONUNBUFFERED="1",
            )
        )

    def start(self) -> None:
        self.db.create()
        self.redis.start()
        self.emu.start()
        env = self.env()
        roles = [("relay", "relay")] + [(f"worker{n}", "worker") for n in range(self.worker_count)]
        self.processes = [
            Process(name, script("stream-outbox", command), env, self._log(name))
            for name, command in roles
        ]
        for process in self.processes:
            process.start()

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        self.emu.stop()
        self.redis.kill()
        self.db.drop()
        for log in self.logs.values():
            log.close()

    # -- faults ---------------------------------------------------------------------------

    def inject(self, fault: str) -> None:
        rng = self.rng
        if fault == "kill -9 worker":
            worker = rng.choice(self.processes[1:])
            worker.kill()
            time.sleep(rng.uniform(0.2, 1.0))
            worker.start()
        elif fault == "kill -9 relay":
            self.processes[0].kill()
            time.sleep(rng.uniform(0.2, 1.0))
            self.processes[0].start()
        elif fault == "redis restart":
            self.redis.restart(down_for=rng.uniform(0.2, 1.5))
        elif fault == "postgres backends terminated":
            self.db.terminate_backends(PIPELINE_APP)
        else:
            self._stream_trouble(fault, 0.3 + rng.uniform(1.0, 3.0) * self.tempo)

    def _stream_trouble(self, fault: str, seconds: float) -> None:
        emu = self.emu
        if fault == "stream 503s":
            emu.inject_failure("*", status=503, times=1_000_000)
        elif fault == "stream hangs":
            emu.hang("*", seconds=STREAM_TIMEOUT + 0.5, times=self.rng.randint(3, 12))
        elif fault == "stream drops":
            emu.drop_connections("*", times=self.rng.randint(3, 12), apply=self.rng.random() < 0.5)
        elif fault == "stream 429s":
            emu.set_rate_limit("*", self.rng.randint(2, 10))
        time.sleep(seconds)
        emu.clear_faults()
        emu.set_rate_limit("*", None)

    def all_up(self) -> None:
        """Restart whatever is down (a fault's restart may still be pending)."""
        for process in self.processes:
            if not process.running:
                process.start()

    def secret_in_logs(self) -> bool:
        for log in self.logs.values():
            log.flush()
        return any(API_SECRET in path.read_text() for path in self.workdir.glob("*.log"))


def _failure_reasons(repo: OutboxRepository) -> Counter[str]:
    query = select(outbox.c.target_kind, outbox.c.last_error).where(
        outbox.c.status == Status.FAILED
    )
    with repo.engine.connect() as conn:
        return Counter(f"{kind}: {(error or '')[:160]}" for kind, error in conn.execute(query))


def _open_rows(repo: OutboxRepository, limit: int = 10) -> list[str]:
    """A sample of the rows still pending or dispatched, oldest first, one line each."""
    query = (
        select(
            outbox.c.id,
            outbox.c.status,
            outbox.c.target_kind,
            outbox.c.attempts,
            func.round(func.extract("epoch", outbox.c.available_at - func.now())),
            outbox.c.dispatched_at.is_not(None),
            outbox.c.last_error,
        )
        .where(outbox.c.status.in_([Status.PENDING, Status.DISPATCHED]))
        .order_by(outbox.c.id)
        .limit(limit)
    )
    with repo.engine.connect() as conn:
        return [
            f"#{id_} {status} {kind} attempts={attempts} due_in={due}s "
            f"dispatched={dispatched} error={(error or '')[:160]!r}"
            for id_, status, kind, attempts, due, dispatched, error in conn.execute(query)
        ]


def converge(chaos: Chaos, model: AppModel, summary: Summary, timeout: float) -> None:
    """Wait until the outbox drains and Stream holds what the database says."""
    engine = chaos.db.engine("stream-outbox-chaos-check")
    repo = OutboxRepository(engine)
    started = time.monotonic()
    replayed = False
    try:
        while time.monotonic() - started < timeout:
            counts = status_counts(repo.engine)
            open_rows = counts.get(Status.PENDING, 0) + counts.get(Status.DISPATCHED, 0)
            if open_rows == 0 and counts.get(Status.FAILED, 0) and not replayed:
                summary.rows_failed = counts[Status.FAILED]
                summary.failures = _failure_reasons(repo)
                replay(engine, actor="chaos", filters=Filters(status="failed"), per_second=500)
                replayed = True
                continue
            if open_rows == 0:
                desired = read_desired(
                    engine, REFERENCE_BINDING, repo, gone=[str(c) for c in model.conversations]
                )
                found = compare(desired=desired, held=held_from_snapshot(chaos.emu.state()))
                summary.users, summary.channels = len(desired.users), len(desired.channels)
                summary.differences = [str(d) for d in found]
                if not found:
                    summary.converge_seconds = time.monotonic() - started
                    break
            time.sleep(0.25)
        counts = status_counts(repo.engine)
        summary.rows = sum(counts.values())
        open_rows = counts.get(Status.PENDING, 0) + counts.get(Status.DISPATCHED, 0)
        summary.rows_lost = open_rows + counts.get(Status.FAILED, 0) + len(summary.differences)
        if open_rows:
            summary.open_rows = _open_rows(repo)
            summary.down = [p.name for p in chaos.processes if not p.running]
    finally:
        engine.dispose()


def run(
    seconds: float,
    *,
    seed: int | None = None,
    workers: int = 2,
    rate: float = 25.0,
    converge_timeout: float = 120.0,
    capture: str = "listeners",
    logs: Path | None = None,
    out: Callable[[str], None] = print,
) -> Summary:
    """One chaos run; returns its summary (printed through ``out`` as it goes).

    The processes' logs go to ``logs`` (kept) when given, else to a temporary folder.
    """
    seed = random.randrange(1_000_000) if seed is None else seed
    rng = random.Random(seed)
    summary = Summary(seconds=seconds, seed=seed, capture=capture)
    with tempfile.TemporaryDirectory(prefix="stream-outbox-chaos-") as scratch:
        workdir = Path(logs or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        chaos = Chaos(workdir, workers, rng, tempo=min(1.0, seconds / 60))
        chaos.start()
        try:
            factory = _capturing_sessions(chaos, capture)
            model = AppModel(factory)
            model.transaction([("sign_up", n, n % 2) for n in range(8)])
            writer = Writer(model, random.Random(rng.random()), rate)
            writer.start()
            _inject_until(chaos, rng, summary, time.monotonic() + seconds, out)
            writer.stop.set()
            writer.join()
            chaos.all_up()
            summary.transactions, summary.refused = writer.transactions, writer.refused
            summary.changes = model.applied
            out(f"load stopped; waiting for convergence (up to {converge_timeout:.0f} s)")
            converge(chaos, model, summary, converge_timeout)
            summary.secret_in_logs = chaos.secret_in_logs()
        finally:
            chaos.stop()
    for line in summary.lines():
        out(line)
    return summary


def _capturing_sessions(chaos: Chaos, capture: str) -> sessionmaker[Session]:
    """The app's sessions: with listeners, or plain over the run's database with triggers."""
    engine = chaos.db.engine("stream-outbox-chaos-app")
    factory = sessionmaker(engine)
    if capture == "triggers":
        with engine.begin() as conn:
            install_triggers(conn, REFERENCE_BINDING)
    else:
        install(factory)
    return factory


def _inject_until(
    chaos: Chaos, rng: random.Random, summary: Summary, end: float, out: Callable[[str], None]
) -> None:
    """Faults at random moments until ``end``: every kind once first, in random order."""
    pending = list(FAULTS)
    rng.shuffle(pending)
    started = time.monotonic()
    while time.monotonic() < end:
        gap = 0.2 + rng.uniform(0.5, 2.0) * chaos.tempo
        time.sleep(min(gap, max(0.0, end - time.monotonic())))
        if time.monotonic() >= end:
            break
        fault = pending.pop() if pending else rng.choice(FAULTS)
        out(f"[{time.monotonic() - started:6.1f} s] {fault}")
        chaos.inject(fault)
        summary.faults[fault] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0, help="load and faults (60)")
    parser.add_argument("--seed", type=int, default=None, help="replay a run (random)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--rate", type=float, default=25.0, help="app transactions/s (25)")
    parser.add_argument("--converge-timeout", type=float, default=120.0, help="seconds (120)")
    parser.add_argument(
        "--capture",
        choices=["listeners", "triggers"],
        default="listeners",
        help="session listeners, or the binding's database triggers (listeners)",
    )
    parser.add_argument(
        "--logs", type=Path, default=None, help="keep the processes' logs in this folder"
    )
    args = parser.parse_args(argv)
    summary = run(
        args.seconds,
        seed=args.seed,
        workers=args.workers,
        rate=args.rate,
        converge_timeout=args.converge_timeout,
        capture=args.capture,
        logs=args.logs,
    )
    ok = summary.converged and not summary.secret_in_logs
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
