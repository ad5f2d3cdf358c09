"""The dashboard's SVG charts: well-formed, escaped, scaled to the data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

from stream_outbox.worker.dashboard.charts import lag_chart, settled_chart
from stream_outbox.worker.operations.series import Point

START = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


def points(*rows: tuple[int, int, float]) -> list[Point]:
    return [
        Point(START + timedelta(minutes=n), done, failed, lag)
        for n, (done, failed, lag) in enumerate(rows)
    ]


def heights(svg: ElementTree.Element, kind: str) -> list[float]:
    return [float(r.get("height", 0)) for r in svg.iter(f"{SVG}rect") if r.get("class") == kind]


def test_bars_are_scaled_to_the_busiest_step_and_failures_sit_on_top() -> None:
    svg = ElementTree.fromstring(settled_chart("settled <a>", points((10, 0, 0), (5, 5, 0))))
    done, failed = heights(svg, "done"), heights(svg, "failed")
    assert done[0] == 2 * done[1] and failed == [0.0, done[1]]
    assert svg.findtext(f"{SVG}title") == "settled <a>"  # escaped, parsed back


def test_the_lag_line_falls_as_the_backlog_drains() -> None:
    chart = lag_chart("oldest pending", points((0, 0, 120), (0, 0, 60), (0, 0, 0)))
    line = next(ElementTree.fromstring(chart).iter(f"{SVG}polyline"))
    ys = [float(xy.split(",")[1]) for xy in str(line.get("points")).split()]
    assert ys[0] < ys[1] < ys[2]  # y grows downwards: the age falls


def test_an_empty_window_still_draws() -> None:
    assert ElementTree.fromstring(settled_chart("settled", [])).tag == f"{SVG}svg"
    assert ElementTree.fromstring(lag_chart("lag", points((0, 0, 0)))).tag == f"{SVG}svg"
