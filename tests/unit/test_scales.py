"""The charts' scales: round ticks for counts and ages, dated time labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from stream_outbox.worker.dashboard.scales import (
    count_ticks,
    duration,
    duration_ticks,
    nice_ticks,
    time_ticks,
)


@pytest.mark.parametrize(
    ("maximum", "ticks"),
    [
        (10, [0, 5, 10]),
        (7, [0, 2, 4, 6, 8]),
        (463, [0, 200, 400, 600]),
        (694.4, [0, 200, 400, 600, 800]),
        (10_417, [0, 5_000, 10_000, 15_000]),
        (20_833, [0, 10_000, 20_000, 30_000]),
        (1, [0, 0.5, 1]),
        (0.003, [0, 0.001, 0.002, 0.003]),
        (0.0123, [0, 0.005, 0.01, 0.015]),
        (1e12, [0, 5e11, 1e12]),
        (3.7e15, [0, 1e15, 2e15, 3e15, 4e15]),
    ],
)
def test_ticks_are_round_and_reach_the_maximum(maximum: float, ticks: list[float]) -> None:
    assert nice_ticks(maximum) == pytest.approx(ticks)


@pytest.mark.parametrize("maximum", [0.0001, 0.7, 1, 3, 9.99, 11, 99, 101, 4_999, 123_456, 9e20])
def test_three_to_five_ticks_of_one_two_or_five_times_a_power_of_ten(maximum: float) -> None:
    ticks = nice_ticks(maximum)
    step = ticks[1]
    assert 3 <= len(ticks) <= 5 and ticks[0] == 0 and ticks[-1] >= maximum > ticks[-2]
    assert ticks == pytest.approx([n * step for n in range(len(ticks))])
    assert f"{step:e}"[:8] in ("1.000000", "2.000000", "5.000000")


def test_counts_step_by_whole_numbers_and_zero_still_has_a_scale() -> None:
    assert nice_ticks(0, whole=True) == [0, 1, 2]
    assert nice_ticks(0) == [0, 0.5, 1]
    assert nice_ticks(1, whole=True) == [0, 1, 2]
    assert nice_ticks(3, whole=True) == [0, 1, 2, 3]
    assert [label for _, label in count_ticks(0)] == ["0", "1", "2"]
    assert [label for _, label in count_ticks(20_833)] == ["0", "10k", "20k", "30k"]
    assert [label for _, label in count_ticks(1_300)] == ["0", "500", "1k", "1.5k"]
    assert [label for _, label in count_ticks(3.1e6)] == ["0", "1M", "2M", "3M", "4M"]


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_a_maximum_that_is_no_size_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="finite number >= 0"):
        nice_ticks(bad)


@pytest.mark.parametrize(
    ("seconds", "labels", "top"),
    [
        (0, ["0 s", "0.5 s", "1 s"], 1),
        (0.4, ["0 s", "0.1 s", "0.2 s", "0.3 s", "0.4 s"], 0.4),
        (45, ["0 s", "20 s", "40 s", "60 s"], 60),
        (600, ["0 min", "5 min", "10 min"], 600),
        (2_000, ["0 min", "10 min", "20 min", "30 min", "40 min"], 2_400),
        (5 * 3_600, ["0 h", "2 h", "4 h", "6 h"], 6 * 3_600),
        (9 * 86_400, ["0 d", "5 d", "10 d"], 10 * 86_400),
    ],
)
def test_ages_tick_in_the_unit_they_read_best(
    seconds: float, labels: list[str], top: float
) -> None:
    ticks = duration_ticks(seconds)
    assert [label for _, label in ticks] == labels
    assert ticks[-1][0] == pytest.approx(top)


def test_an_age_reads_in_its_unit() -> None:
    assert [duration(s) for s in (0, 0.3, 12.4, 119, 600, 659, 7_200, 5_400 * 3)] == [
        "0 s",
        "0.3 s",
        "12 s",
        "119 s",
        "10 min",
        "10 min",
        "2 h",
        "4.5 h",
    ]


def test_an_hour_axis_is_labelled_every_quarter_hour_without_a_date() -> None:
    start = datetime(2026, 12, 5, 8, 31, tzinfo=UTC)
    labels = [label for _, label in time_ticks(start, start + timedelta(hours=1))]
    assert labels == ["08:45", "09:00", "09:15", "09:30"]


def test_a_day_axis_is_labelled_every_six_hours_with_the_date() -> None:
    start = datetime(2026, 12, 5, 8, 45, tzinfo=UTC)
    ticks = time_ticks(start, start + timedelta(days=1))
    assert [label for _, label in ticks] == [
        "Dec 5 12:00",
        "Dec 5 18:00",
        "Dec 6 00:00",
        "Dec 6 06:00",
    ]
    assert all(start <= moment <= start + timedelta(days=1) for moment, _ in ticks)


def test_times_are_labelled_in_utc_and_a_long_axis_is_thinned() -> None:
    paris = datetime(2026, 12, 5, 10, 0, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    assert time_ticks(paris, paris + timedelta(minutes=4))[0][1] == "10:00"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert 3 <= len(time_ticks(start, start + timedelta(days=365))) <= 5
    assert time_ticks(start, start) == []
