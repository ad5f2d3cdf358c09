"""Stream's rate limits: the published table and Stream's own answer, read by the worker."""

from __future__ import annotations

from typing import Any

import pytest

from stream_outbox.worker.stream.limits import PUBLISHED_LIMITS, limits_from_answer


def test_the_published_table_has_stream_s_defaults_for_the_calls_the_worker_makes() -> None:
    # (docs/debugging_and_cli/rate_limits.md, "Rate Limits by Endpoint")
    assert PUBLISHED_LIMITS["GetOrCreateChannel"] == 10_000
    assert PUBLISHED_LIMITS["SendMessage"] == 1_000
    assert PUBLISHED_LIMITS["UpdateUsers"] == PUBLISHED_LIMITS["UpdateChannel"] == 300
    assert PUBLISHED_LIMITS["DeactivateUsers"] == PUBLISHED_LIMITS["DeleteUsers"] == 60


@pytest.mark.parametrize(
    ("answer", "limits"),
    [
        (
            {"server_side": {"SendMessage": {"limit": 2000, "remaining": 1999, "reset": 1}}},
            {"SendMessage": 2000},
        ),
        ({"server_side": {"SendMessage": {"limit": 0}, "QueryUsers": {}}}, {}),
        ({"server_side": {"SendMessage": {"limit": "many"}, "X": {"limit": True}}}, {}),
        ({"android": {"SendMessage": {"limit": 5}}}, {}),
        ({}, {}),
    ],
)
def test_stream_s_answer_gives_whole_positive_limits_only(
    answer: dict[str, Any], limits: dict[str, int]
) -> None:
    assert limits_from_answer(answer) == limits
