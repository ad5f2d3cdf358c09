"""Server-rendered SVG charts of the outbox's series (no script: the page's CSP stays).

Pure: points in, SVG markup out (every text escaped). Each chart has a y axis of round
ticks with gridlines (:mod:`.scales`), a few time labels along the x axis (dated on a
day's axis, UTC), and the lag chart the current age beside its line's last point.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from html import escape

from stream_outbox.worker.dashboard.scales import (
    DATED_SPAN,
    Tick,
    count_ticks,
    duration,
    duration_ticks,
    time_label,
    time_ticks,
)
from stream_outbox.worker.operations.series import Point

__all__ = ["lag_chart", "settled_chart"]

W, H = 640, 190
LEFT, RIGHT, TOP, BOTTOM = 50, 86, 24, 24  # the plot's margins (labels live in them)
X0, X1, Y0, Y1 = LEFT, W - RIGHT, TOP, H - BOTTOM  # the plot; Y1 is the zero line
_DEFAULT_STEP = timedelta(minutes=1)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # an empty chart's time axis (it has no labels)
_TEXT = 'font-size="11" fill="#4a5561"'


class _Axes:
    """Where a time and a value land on the plot."""

    def __init__(self, start: datetime, end: datetime, top: float) -> None:
        self.start, self.span, self.top = start, (end - start) or _DEFAULT_STEP, top

    def x(self, moment: datetime) -> float:
        return X0 + (moment - self.start) / self.span * (X1 - X0)

    def y(self, value: float) -> float:
        return Y1 - value / self.top * (Y1 - Y0)


def _step(points: Sequence[Point]) -> timedelta:
    return points[1].at - points[0].at if len(points) > 1 else _DEFAULT_STEP


def _axes(points: Sequence[Point], ticks: list[Tick]) -> _Axes:
    """A time axis from the first step's start to the last step's end."""
    if not points:
        return _Axes(_EPOCH, _EPOCH + _DEFAULT_STEP, ticks[-1][0])
    return _Axes(points[0].at - _step(points), points[-1].at, ticks[-1][0])


def _y_axis(axes: _Axes, ticks: list[Tick]) -> str:
    parts = []
    for value, label in ticks:
        y = axes.y(value)
        colour = "#8a939c" if value == 0 else "#e1e5ea"
        parts.append(
            f'<g class="y-tick"><line x1="{X0}" y1="{y:.1f}" x2="{X1}" y2="{y:.1f}" '
            f'stroke="{colour}"/><text x="{X0 - 5}" y="{y + 4:.1f}" text-anchor="end" '
            f"{_TEXT}>{escape(label)}</text></g>"
        )
    return "".join(parts)


def _x_axis(axes: _Axes, points: Sequence[Point]) -> str:
    if not points:
        return ""
    end = axes.start + axes.span
    parts = []
    for moment, label in time_ticks(axes.start, end):
        x = axes.x(moment)
        anchor = "start" if x - X0 < 30 else "end" if X1 - x < 30 else "middle"
        parts.append(
            f'<g class="x-tick"><line x1="{x:.1f}" y1="{Y1}" x2="{x:.1f}" y2="{Y1 + 4}" '
            f'stroke="#8a939c"/><text x="{x:.1f}" y="{Y1 + 16}" text-anchor="{anchor}" '
            f"{_TEXT}>{escape(label)}</text></g>"
        )
    return "".join(parts)


def _frame(title: str, axes: _Axes, ticks: list[Tick], points: Sequence[Point], body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" '
        f'class="chart" aria-label="{escape(title)}" font-family="system-ui, sans-serif">'
        f"<title>{escape(title)}</title>"
        f'<text class="chart-title" x="{X0}" y="14" font-size="12" font-weight="600" '
        f'fill="#1d232a">{escape(title)}</text>'
        f"{_y_axis(axes, ticks)}{_x_axis(axes, points)}{body}</svg>"
    )


def _dated(axes: _Axes) -> bool:
    return axes.span >= DATED_SPAN


def settled_chart(title: str, points: Sequence[Point]) -> str:
    """Bars of rows settled per step: done (green) with failed (red) on top."""
    ticks = count_ticks(max((p.done + p.failed for p in points), default=0))
    axes = _axes(points, ticks)
    step, dated = _step(points), _dated(axes)
    bars = []
    for p in points:
        left, right = axes.x(p.at - step), axes.x(p.at)
        done_top, failed_top = axes.y(p.done), axes.y(p.done + p.failed)
        label = f"{time_label(p.at, dated)}: {p.done} done, {p.failed} failed"
        bar = f'x="{left:.1f}" width="{max(right - left - 0.6, 0.6):.1f}"'
        bars.append(
            f"<g><title>{escape(label)}</title>"
            f'<rect class="done" {bar} y="{done_top:.1f}" height="{Y1 - done_top:.1f}" '
            f'fill="#3a3"/><rect class="failed" {bar} y="{failed_top:.1f}" '
            f'height="{done_top - failed_top:.1f}" fill="#c33"/></g>'
        )
    return _frame(title, axes, ticks, points, "".join(bars))


def lag_chart(title: str, points: Sequence[Point]) -> str:
    """A line of the oldest pending age at each step's end, the last one written beside it
    (``now 12 s``)."""
    ticks = duration_ticks(max((p.oldest_pending_seconds for p in points), default=0.0))
    axes = _axes(points, ticks)
    if not points:
        return _frame(title, axes, ticks, points, "")
    coords = [(axes.x(p.at), axes.y(p.oldest_pending_seconds)) for p in points]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    x, y = coords[-1]
    now = f"now {duration(points[-1].oldest_pending_seconds)}"
    body = (
        f'<polyline class="lag" points="{line}" fill="none" stroke="#36c" stroke-width="2"/>'
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#36c"/>'
        f'<text class="now" x="{x + 6:.1f}" y="{max(y + 4, Y0 + 8):.1f}" font-size="11" '
        f'font-weight="600" fill="#245">{escape(now)}</text>'
    )
    return _frame(title, axes, ticks, points, body)
