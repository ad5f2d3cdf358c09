"""The benchmark table's rows for the sections a run adds, from results of their shape."""

from __future__ import annotations

from typing import Any

from benchmarks import report

INBOUND: dict[str, Any] = {
    "webhooks": 5000,
    "client_threads": 16,
    "received_per_second": 1506,
    "received_per_cpu_second": 1859,
    "applied_per_second": 210,
    "applied_per_cpu_second": 350,
    "paced_rate": 20,
    "lag_ms_p50": 3.6,
    "lag_ms_p99": 15.4,
}
INBOUND_LAG: dict[str, Any] = {
    "inbound": {
        "messages": 100,
        "rate": 20.0,
        "lag_ms_p50": 6.7,
        "lag_ms_p99": 15.8,
        "lag_ms_max": 15.8,
        "stream_calls_besides_the_clients": {},
    },
    "outbound_echo": {
        "app_messages_written": 100,
        "echoes": ["ignored"],
        "rows_the_echoes_added": 0,
    },
}
WAIT = {"p50": 0.306, "p99": 0.621, "max": 0.7}
ON_DEMAND: list[dict[str, Any]] = [
    {
        "run": "default worker",
        "backlog": {"rows": 100_000},
        "latency_ms": 0.0,
        "drain_s": 31.5,
        "first_request": {"ready_s": 0.442},
        "answered_s": WAIT,
        "ready_s": WAIT,
        "synced_s": WAIT,
    }
]


def test_inbound_rows() -> None:
    rows = report.rows({"inbound": INBOUND, "inbound_lag": INBOUND_LAG})
    assert rows[0][1] == "received 1,506/s (1,859/CPU-s)"
    assert rows[1][1:3] == ("p50 6.7 ms", "p99 15.8 / max 15.8 ms")
    assert "Stream calls caused: none" in rows[1][3]
    assert "echoes ignored, 0 rows they added" in rows[1][3]


def test_on_demand_rows() -> None:
    (row,) = report.rows({"on_demand": ON_DEMAND})
    assert row[0] == "on-demand migration: default worker, 100,000 rows, 0 ms a call"
    assert row[1] == "ready in Stream p50 / p99 306 / 621 ms"


def test_admin_rows() -> None:
    results = {"done_rows": 1_000_000, "failed_rows": 5_000, "error_groups": {"median_ms": 47}}
    assert report.rows({"admin_queries": results}) == [
        ("admin query: error_groups", "median 47 ms", "", "1,000,000 done rows, 5,000 failed")
    ]


def test_a_section_without_rows_of_its_own_lists_every_figure() -> None:
    rows = report._generic_rows("no_such_module", {"front_page_ms": {"1000000": 120.5}})
    assert rows == [("no_such_module: front_page_ms.1000000", "120.5", "", "")]


def test_the_table_says_machine_and_date() -> None:
    results = {
        "machine": {"model": "AMD EPYC", "cpus": 2, "memory_gib": 23.5, "python": "3.11.7"},
        "date": "2026-12-07 09:00 UTC",
        "inbound": INBOUND,
    }
    first = report.table(results).splitlines()[0]
    assert first.startswith("2 cores AMD EPYC, 23.5 GiB, Python 3.11.7")
    assert first.endswith("2026-12-07 09:00 UTC")
