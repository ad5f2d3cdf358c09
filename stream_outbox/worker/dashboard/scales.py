"""The charts' scales, pure: round ticks for counts and ages, and time labels for an axis.

Counts and ages get 3 to 5 ticks from 0, a step of 1, 2 or 5 times a power of ten (an age
first picks its unit: s, min, h or d); a time axis gets a few labels at round times,
dated when the axis spans a day.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

__all__ = [
    "DATED_SPAN",
    "Tick",
    "count_ticks",
    "duration",
    "duration_ticks",
    "nice_ticks",
    "time_label",
    "time_ticks",
]

Tick = tuple[float, str]  # a value on the axis and its label

MAX_TICKS = 5
DATED_SPAN = timedelta(hours=6)  # a time axis this long or longer is dated
_MANTISSAS = (1, 2, 5)
# (seconds, name): an age is shown in the largest unit it holds at least twice
_UNITS = ((86_400, "d"), (3_600, "h"), (60, "min"), (1, "s"))
# a time axis's label intervals, shortest first
_INTERVALS = tuple(
    timedelta(minutes=m) for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880)
)


def nice_ticks(maximum: float, *, whole: bool = False) -> list[float]:
    """3 to 5 ticks from 0 to at least ``maximum``, a step of 1, 2 or 5 times a power of ten
    (``whole``: a step of at least 1, for counts). A maximum of 0 gets ``[0, 1, 2]`` when
    whole, a unit scale otherwise."""
    if not math.isfinite(maximum) or maximum < 0:
        raise ValueError(f"a chart's maximum must be a finite number >= 0, not {maximum!r}")
    if maximum == 0:
        return [0.0, 1.0, 2.0] if whole else [0.0, 0.5, 1.0]
    exponent = math.floor(math.log10(maximum)) - 1
    if whole:
        exponent = max(exponent, 0)
    while True:
        for mantissa in _MANTISSAS:
            step = mantissa * 10.0**exponent
            steps = math.ceil(maximum / step - 1e-9)
            if steps <= MAX_TICKS - 1:
                places = max(0, -exponent)
                return [round(n * step, places) for n in range(max(steps, 2) + 1)]
        exponent += 1


def _number(value: float) -> str:
    """``1500`` -> ``1.5k``; ``2000000`` -> ``2M``; ``0.25`` -> ``0.25``."""
    for size, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.6g}"


def count_ticks(maximum: float) -> list[Tick]:
    """Ticks of a count axis (whole numbers), labelled ``0, 5k, 10k``."""
    return [(value, _number(value)) for value in nice_ticks(maximum, whole=True)]


def _unit(seconds: float) -> tuple[int, str]:
    return next((size, name) for size, name in _UNITS if seconds >= 2 * size or size == 1)


def duration_ticks(maximum_seconds: float) -> list[Tick]:
    """Ticks of an age axis in seconds, round in the unit the maximum reads best in
    (``0 s, 20 s, 40 s``; ``0 min, 10 min, 20 min``; ``0 h, 5 h``)."""
    size, name = _unit(maximum_seconds)
    ticks = nice_ticks(maximum_seconds / size, whole=size > 1)
    return [(value * size, f"{_number(value)} {name}") for value in ticks]


def duration(seconds: float) -> str:
    """An age for people, in the unit it reads best: ``12 s``, ``14 min``, ``3.5 h``."""
    size, name = _unit(seconds)
    value = seconds / size
    if size == 1:
        return f"{value:.0f} s" if value >= 1 or value == 0 else f"{value:.1f} s"
    if size == 60:
        return f"{math.floor(value)} min"
    return f"{math.floor(value * 10) / 10:g} {name}"


def time_label(moment: datetime, dated: bool) -> str:
    """``09:15``, or ``Dec 5 09:15`` when ``dated`` (UTC)."""
    moment = moment.astimezone(UTC)
    clock = f"{moment:%H:%M}"
    return f"{moment:%b} {moment.day} {clock}" if dated else clock


def time_ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """At most 5 labelled times at round intervals (UTC) within ``start..end``, dated when
    the axis spans 6 hours or more."""
    if end <= start:
        return []
    dated = end - start >= DATED_SPAN
    origin = datetime(2000, 1, 1, tzinfo=UTC)
    for interval in _INTERVALS:  # the shortest interval that gives at most 5 labels
        first = origin + math.ceil((start - origin) / interval) * interval
        count = math.floor((end - first) / interval) + 1
        if count <= MAX_TICKS:
            break
    every = max(1, math.ceil(count / MAX_TICKS))  # beyond the longest interval: thinned
    moments = [first + n * interval for n in range(0, max(count, 0), every)]
    return [(moment, time_label(moment, dated)) for moment in moments]
