"""Prometheus metrics of the relay, the workers and the inbound process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "INBOUND_APPLIED",
    "INBOUND_LAG",
    "INBOUND_WEBHOOKS",
    "INBOX_OLDEST_PENDING_AGE",
    "INBOX_PENDING",
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

# -- the inbound side (stream-outbox inbound) -----------------------------------------
INBOUND_WEBHOOKS = Counter(
    "stream_outbox_inbound_webhooks_total",
    "Webhooks received from Stream by outcome: stored, duplicate, unknown_type, "
    "bad_signature, bad_api_key, too_large, bad_body, not_stored (the database away: 503)",
    ["outcome"],
)
INBOUND_APPLIED = Counter(
    "stream_outbox_inbound_applied_total",
    "Inbox rows settled by the inbound runner, by status (done, ignored, failed) "
    "and attempts to retry (retried)",
    ["status"],
)
INBOUND_LAG = Histogram(
    "stream_outbox_inbound_lag_seconds",
    "From an event's time in Stream (its created_at) to its inbox row applied",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
INBOX_PENDING = Gauge("stream_outbox_inbox_pending_rows", "Inbox rows waiting to be applied")
INBOX_OLDEST_PENDING_AGE = Gauge(
    "stream_outbox_inbox_oldest_pending_age_seconds",
    "Age of the oldest pending inbox row (inbound lag)",
)
