"""Server-rendered SVG charts of the outbox's series (no script: the page's CSP stays).

Pure: points in, SVG markup out (every text escaped).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from stream_outbox.worker.operations.series import Point

__all__ = ["lag_chart", "settled_chart"]

_W, _H, _PAD = 640, 160, 28


def _scale(values: Sequence[float]) -> float:
    top = max(values, default=0.0)
    return top if top > 0 else 1.0


def _frame(title: str, top: str, points: Sequence[Point], body: str) -> str:
    first = points[0].at.strftime("%H:%M") if points else ""
    last = points[-1].at.strftime("%H:%M") if points else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" role="img" '
        f'class="chart" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - 4}" y2="{_H - _PAD}" stroke="#888"/>'
        f'<text x="{_PAD}" y="12" font-size="11">{escape(title)} (max {escape(top)})</text>'
        f'<text x="{_PAD}" y="{_H - 8}" font-size="10">{escape(first)}</text>'
        f'<text x="{_W - 4}" y="{_H - 8}" font-size="10" text-anchor="end">{escape(last)}</text>'
        f"{body}</svg>"
    )


def settled_chart(title: str, points: Sequence[Point]) -> str:
    """Bars of rows settled per step: done (green) with failed (red) on top."""
    top = _scale([p.done + p.failed for p in points])
    width = (_W - _PAD - 4) / max(1, len(points))
    usable = _H - 2 * _PAD
    bars = []
    for n, p in enumerate(points):
        x = _PAD + n * width
        done_h = p.done / top * usable
        failed_h = p.failed / top * usable
        base = _H - _PAD
        label = f"{p.at:%H:%M}: {p.done} done, {p.failed} failed"
        bar = f'x="{x:.1f}" width="{max(width - 1, 1):.1f}"'
        bars.append(
            f"<g><title>{escape(label)}</title>"
            f'<rect class="done" {bar} y="{base - done_h:.1f}" height="{done_h:.1f}" fill="#3a3"/>'
            f'<rect class="failed" {bar} y="{base - done_h - failed_h:.1f}" '
            f'height="{failed_h:.1f}" fill="#c33"/></g>'
        )
    return _frame(title, f"{int(top)} rows", points, "".join(bars))


def lag_chart(title: str, points: Sequence[Point]) -> str:
    """A line of the oldest pending age at each step's end."""
    ages = [p.oldest_pending_seconds for p in points]
    top = _scale(ages)
    width = (_W - _PAD - 4) / max(1, len(points) - 1)
    usable = _H - 2 * _PAD
    coords = " ".join(
        f"{_PAD + n * width:.1f},{_H - _PAD - age / top * usable:.1f}" for n, age in enumerate(ages)
    )
    line = f'<polyline class="lag" points="{coords}" fill="none" stroke="#36c" stroke-width="2"/>'
    return _frame(title, f"{top:.0f} s", points, line)
