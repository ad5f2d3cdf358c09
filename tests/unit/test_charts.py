"""The dashboard's SVG charts: well-formed, escaped, scaled to round ticks, labelled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from xml.etree import ElementTree

from stream_outbox.worker.dashboard.charts import Y1, lag_chart, settled_chart
from stream_outbox.worker.operations.series import Point

START = datetime(2026, 12, 5, 8, 31, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


def points(*rows: tuple[int, int, float], step: timedelta = timedelta(minutes=1)) -> list[Point]:
    return [
        Point(START + n * step, done, failed, lag) for n, (done, failed, lag) in enumerate(rows)
    ]


def parse(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)


def heights(svg: ElementTree.Element, kind: str) -> list[float]:
    return [float(r.get("height", 0)) for r in svg.iter(f"{SVG}rect") if r.get("class") == kind]


def labels(svg: ElementTree.Element, kind: str) -> list[str]:
    """The texts of the ``y-tick`` or ``x-tick`` groups, in order."""
    groups = (g for g in svg.iter(f"{SVG}g") if g.get("class") == kind)
    return [str(g.findtext(f"{SVG}text")) for g in groups]


def tick_ys(svg: ElementTree.Element) -> dict[str, float]:
    groups = (g for g in svg.iter(f"{SVG}g") if g.get("class") == "y-tick")
    return {str(g.findtext(f"{SVG}text")): float(g.find(f"{SVG}line").get("y1")) for g in groups}  # type: ignore[union-attr]


def test_bars_are_scaled_to_the_top_tick_and_failures_sit_on_top() -> None:
    svg = parse(settled_chart("settled <a>", points((10, 0, 0), (5, 5, 0))))
    done, failed = heights(svg, "done"), heights(svg, "failed")
    assert done[0] == 2 * done[1] and failed == [0.0, done[1]]
    assert svg.findtext(f"{SVG}title") == "settled <a>"  # escaped, parsed back
    assert labels(svg, "y-tick") == ["0", "5", "10"]
    ys = tick_ys(svg)
    assert ys["0"] == Y1 and done[0] == Y1 - ys["10"]  # the busiest bar reaches its tick


def test_counts_tick_at_round_numbers_with_gridlines_across_the_plot() -> None:
    busy = points(*[(n * 347, n * 3, 0) for n in range(60)])  # up to 20,473 + 177
    svg = parse(settled_chart("settled", busy))
    assert labels(svg, "y-tick") == ["0", "10k", "20k", "30k"]
    ys = list(tick_ys(svg).values())
    assert ys == sorted(ys, reverse=True)  # higher values higher up
    gaps = [a - b for a, b in pairwise(ys)]
    assert max(gaps) - min(gaps) < 0.2  # evenly spaced


def test_an_hour_axis_has_times_every_quarter_hour() -> None:
    svg = parse(settled_chart("settled", points(*[(1, 0, 0)] * 60)))  # 08:30 to 09:30
    assert labels(svg, "x-tick") == ["08:30", "08:45", "09:00", "09:15", "09:30"]


def test_a_day_axis_has_dated_times() -> None:
    day = points(*[(1, 0, 0)] * 96, step=timedelta(minutes=15))
    for chart in (settled_chart("settled", day), lag_chart("lag", day)):
        assert labels(parse(chart), "x-tick") == [
            "Dec 5 12:00",
            "Dec 5 18:00",
            "Dec 6 00:00",
            "Dec 6 06:00",
        ]
    bar = next(
        g for g in parse(settled_chart("settled", day)).iter(f"{SVG}g") if g.get("class") is None
    )
    assert bar.findtext(f"{SVG}title") == "Dec 5 08:31: 1 done, 0 failed"  # a bar's tooltip


def test_the_lag_line_falls_as_the_backlog_drains_and_says_its_last_age() -> None:
    chart = parse(lag_chart("oldest pending", points((0, 0, 120), (0, 0, 60), (0, 0, 12.4))))
    line = next(chart.iter(f"{SVG}polyline"))
    xys = [tuple(map(float, xy.split(","))) for xy in str(line.get("points")).split()]
    ys = [y for _, y in xys]
    assert ys[0] < ys[1] < ys[2]  # y grows downwards: the age falls
    assert labels(chart, "y-tick") == ["0 min", "1 min", "2 min"]
    now = next(t for t in chart.iter(f"{SVG}text") if t.get("class") == "now")
    assert now.text == "now 12 s"
    assert float(now.get("x", 0)) > xys[-1][0]  # beside the last point


def test_large_ages_tick_in_hours() -> None:
    chart = parse(lag_chart("lag", points((0, 0, 5 * 3600), (0, 0, 4 * 3600))))
    assert labels(chart, "y-tick") == ["0 h", "2 h", "4 h", "6 h"]
    assert next(t.text for t in chart.iter(f"{SVG}text") if t.get("class") == "now") == "now 4 h"


def test_an_empty_window_still_draws_a_scale() -> None:
    empty = parse(settled_chart("settled", []))
    assert empty.tag == f"{SVG}svg" and labels(empty, "y-tick") == ["0", "1", "2"]
    assert labels(empty, "x-tick") == []
    quiet = parse(lag_chart("lag", points((0, 0, 0))))
    assert labels(quiet, "y-tick") == ["0 s", "0.5 s", "1 s"]
    assert parse(lag_chart("lag", [])).tag == f"{SVG}svg"


def test_every_text_is_escaped() -> None:
    chart = lag_chart('a <b> & "c"', points((0, 0, 1)))
    assert "<b>" not in chart and parse(chart).findtext(f"{SVG}title") == 'a <b> & "c"'
