"""Prometheus metrics of the relay and the workers."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "OUTBOX_FAILED",
    "OUTBOX_OLDEST_PENDING_AGE",
    "OUTBOX_PENDING",
    "RECONCILES",
    "RECONCILE_SECONDS",
    "RELAY_DISPATCHED",
    "STREAM_CALLS",
]

STREAM_CALLS = Counter(
    "stream_outbox_stream_calls_total",
    "Calls to Stream by endpoint and status",
    ["endpoint", "status"],
)
RECONCILES = Counter(
    "stream_outbox_reconciles_total", "Reconciles by target kind and outcome", ["kind", "outcome"]
)
RECONCILE_SECONDS = Histogram(
    "stream_outbox_reconcile_seconds",
    "Duration of one reconcile",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RELAY_DISPATCHED = Counter(
    "stream_outbox_relay_dispatched_rows_total", "Outbox rows dispatched by the relay"
)
OUTBOX_PENDING = Gauge("stream_outbox_pending_rows", "Outbox rows waiting to be dispatched")
OUTBOX_FAILED = Gauge("stream_outbox_failed_rows", "Outbox rows that failed")
OUTBOX_OLDEST_PENDING_AGE = Gauge(
    "stream_outbox_oldest_pending_age_seconds", "Age of the oldest pending row (lag)"
)
