"""Convergence with capture by database triggers and no session listener.

The property of :mod:`tests.property.test_convergence` (the same steps, faults and
checks), with the reference binding's capture triggers installed in the test database
and the app's sessions made by a factory without ``install()``: every outbox row is
the triggers' (one per target per transaction). The triggers are dropped after the
test, whatever happens: the test database is shared by every later test of the run.

A smaller fixed budget for CI (``CONVERGENCE_TRIGGER_EXAMPLES``, default 6);
``CONVERGENCE_SEED`` as for the listeners' run.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import example, given
from sqlalchemy.orm import Session, sessionmaker

from tests.property.test_convergence import RESTORED, STEPS, check_convergence, search_settings
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("CONVERGENCE_TRIGGER_EXAMPLES", "6"))


@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@pytest.mark.timeout(max(120, EXAMPLES * 15))
@search_settings(EXAMPLES)
@given(steps=STEPS)
@example(steps=RESTORED)
def test_stream_converges_on_the_database_with_triggers_and_no_listener(
    pipeline_under_faults: Pipeline,
    trigger_sessions: sessionmaker[Session],
    steps: list[tuple[Any, ...]],
) -> None:
    check_convergence(pipeline_under_faults, trigger_sessions, steps)
