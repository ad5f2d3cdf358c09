"""The chaos run in its short form: 15 seconds of load and faults, then convergence.

Every kind of fault happens at least once (``kill -9`` of a worker and of the relay, a
Redis restart, the pipeline's PostgreSQL backends terminated, Stream answering 503,
hanging, dropping connections and rate limiting); the run must converge with no row
lost and the secret in no process's log. The long form is
``python -m tests.chaos.chaos --seconds 300``. A second run (12 seconds) captures by
the reference binding's database triggers instead of session listeners
(``--capture triggers``).

The short runs write 12 transactions a second, not the long form's 25: at 25 the
messages alone outrun Stream's message budget (1,000 calls a minute), and the run
spends most of its time draining that backlog at the budget's pace, which the
benchmarks measure, rather than meeting faults.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos.chaos import FAULTS
from tests.support.redis import redis_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SEED = os.environ.get("CHAOS_SEED", "20261125")


def run_chaos(*options: str) -> str:
    """A chaos run in a subprocess; asserts it converged, lost nothing and met every fault."""
    redis_server()  # the run restarts a Redis server of its own
    done = subprocess.run(
        [sys.executable, "-m", "tests.chaos.chaos", "--seed", SEED, "--rate", "12", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=140,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "rows lost: 0" in out, out
    faults = re.search(r"faults injected: (\d+) \((.*)\)", out)
    assert faults is not None, out
    assert all(name in faults.group(2) for name in FAULTS), out
    return out


@pytest.mark.timeout(150)
def test_a_short_chaos_run_converges_and_loses_nothing() -> None:
    out = run_chaos("--seconds", "15", "--converge-timeout", "60")
    print(out)  # the summary, in the test's output with -s or on failure


@pytest.mark.timeout(150)
def test_a_short_chaos_run_with_capture_triggers_converges_and_loses_nothing() -> None:
    """The same faults with the reference binding's triggers and no session listener."""
    out = run_chaos("--seconds", "12", "--converge-timeout", "60", "--capture", "triggers")
    assert "capture by triggers" in out, out
    print(out)
