"""The one table the benchmark run prints (and docs/benchmarks.md holds), from the results."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

Row = tuple[str, str, str, str]


def _write_rows(results: list[dict[str, Any]]) -> list[Row]:
    rows: list[Row] = []
    for r in results:
        m, lat = r["modes"], f"{r['latency_ms']:g} ms"
        for mode in ("baseline", "hooks", "inline"):
            fig = m[mode]
            rows.append(
                (
                    f"write path: {mode} (emulator {lat})",
                    f"p50 {fig['p50_ms']:.2f} ms",
                    f"p99 {fig['p99_ms']:.2f} ms",
                    f"n={fig['n']}",
                )
            )
        rows.append(
            (
                f"write path ratios ({lat})",
                f"b/a {r['ratio_hooks_baseline']:.3f}",
                f"c/b {r['ratio_inline_hooks']:.1f}",
                "targets <= 1.15, >= 3",
            )
        )
        rows += _trigger_rows(r, lat)
    return rows


def _trigger_rows(r: dict[str, Any], lat: str) -> list[Row]:
    """The capture triggers' modes (second database), where the run had them."""
    m = r["modes"]
    if "triggers" not in m:
        return []
    rows: list[Row] = []
    for mode, label in (("triggers", "triggers"), ("triggers_standby", "triggers + standby")):
        fig = m[mode]
        rows.append(
            (
                f"write path: {label} (emulator {lat})",
                f"p50 {fig['p50_ms']:.2f} ms",
                f"p99 {fig['p99_ms']:.2f} ms",
                f"n={fig['n']}",
            )
        )
    per_tx = ", ".join(
        f"{mode} {m[mode]['rows_per_tx']:.2f}"
        for mode in ("baseline", "hooks", "triggers", "triggers_standby")
        if "rows_per_tx" in m[mode]
    )
    rows.append(
        (
            f"write path: triggers vs listeners ({lat})",
            f"triggers/baseline {r['ratio_triggers_baseline']:.3f}",
            f"triggers/hooks {r['ratio_triggers_hooks']:.3f}",
            f"target <= 1; outbox rows/tx: {per_tx}",
        )
    )
    return rows


def _e2e_rows(results: list[dict[str, Any]]) -> list[Row]:
    rows: list[Row] = []
    for r in results:
        how = "LISTEN/NOTIFY" if r["listen"] else "polling 1 s"
        timeout = r["env"].get("OUTBOX_WORKER_TIMEOUT_MS", "100 (default)")
        rows.append(
            (
                f"commit->Stream: {how}, worker timeout {timeout} ms, "
                f"emulator {r['latency_ms']:g} ms",
                f"p50 {r['p50_ms']:.1f} ms",
                f"p95 {r['p95_ms']:.1f} / p99 {r['p99_ms']:.1f} ms",
                f"{r['commits']} commits at {r['rate_per_s']:g}/s",
            )
        )
    return rows


def _drain_rows(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    runs = results["runs"]
    for r in runs:
        rows.append(
            (
                f"drain: {r['mode']}, {r['workers']} worker process(es)",
                f"{r['rows_per_s']:.0f} rows/s",
                f"{r['reconciles_per_s']:.0f} reconciles/s",
                f"{r['calls_per_row']:.3f} calls/row, {r['rows']} rows",
            )
        )
    by = {(r["mode"], r["workers"]): r["rows_per_s"] for r in runs}
    for n in sorted({r["workers"] for r in runs if r["mode"] == "pipeline"}):
        pipe, floor = by.get(("pipeline", n)), by.get(("floor", n))
        naive = by.get(("naive", 1))
        if pipe and floor and naive:
            rows.append(
                (
                    f"drain ratios, {n} worker(s)",
                    f"x{pipe / naive:.1f} naive",
                    f"floor/pipeline {floor / pipe:.2f}",
                    "targets >= 5, <= 2",
                )
            )
    return rows


def _rate_rows(r: dict[str, Any], label: str = "backfill under Stream's limits") -> list[Row]:
    return [
        (
            label,
            f"{r['conversations_per_s']:.2f} conv/s, {r['messages_per_s']:.1f} msg/s",
            f"SendMessage {r['send_message_per_min']:.0f}/min "
            f"(limit {r['send_message_limit_per_min']})",
            f"{r['calls_per_message']:.2f} calls/msg, {r['status_429']} x 429",
        ),
    ]


def _inbound_rows(r: dict[str, Any]) -> list[Row]:
    return [
        (
            f"inbound webhooks, {r['webhooks']:,} from {r['client_threads']} threads",
            f"received {r['received_per_second']:,}/s ({r['received_per_cpu_second']:,}/CPU-s)",
            f"applied {r['applied_per_second']:,}/s ({r['applied_per_cpu_second']:,}/CPU-s)",
            f"paced {r['paced_rate']:g}/s: lag p50 {r['lag_ms_p50']:.1f} / p99 "
            f"{r['lag_ms_p99']:.1f} ms",
        )
    ]


def _inbound_lag_rows(r: dict[str, Any]) -> list[Row]:
    i, echo = r["inbound"], r["outbound_echo"]
    others = i["stream_calls_besides_the_clients"]
    return [
        (
            f"dual mode: client message to the app's table, {i['messages']} at {i['rate']:g}/s",
            f"p50 {i['lag_ms_p50']:.1f} ms",
            f"p99 {i['lag_ms_p99']:.1f} / max {i['lag_ms_max']:.1f} ms",
            f"Stream calls caused: {sum(others.values()) if others else 'none'}; the app's "
            f"{echo['app_messages_written']} echoes {', '.join(echo['echoes'])}, "
            f"{echo['rows_the_echoes_added']} rows they added",
        )
    ]


def _chat_row(r: dict[str, Any]) -> Row:
    stages = " + ".join(f"{v:.1f}" for v in r["stages_p50_ms"].values())
    return (
        f"chat page: legacy post to rendered, emulator {r['latency_ms']:g} ms"
        + (f", messages {r['gap_s']:g} s apart" if r["gap_s"] != 1.0 else ""),
        f"p50 {r['p50_ms']:.1f} ms",
        f"p95 {r['p95_ms']:.1f} / p99 {r['p99_ms']:.1f} / max {r['max_ms']:.1f} ms",
        f"{r['messages']} messages; stages p50 {stages} ms",
    )


def _chat_rows(results: list[dict[str, Any]]) -> list[Row]:
    return [_chat_row(r) for r in results]


def _on_demand_rows(results: list[dict[str, Any]]) -> list[Row]:
    rows: list[Row] = []
    for r in results:

        def ms(key: str, f: dict[str, Any] = r) -> str:
            return f"{f[key]['p50'] * 1000:,.0f} / {f[key]['p99'] * 1000:,.0f} ms"

        rows.append(
            (
                f"on-demand migration: {r['run']}, {r['backlog']['rows']:,} rows, "
                f"{r['latency_ms']:g} ms a call",
                f"ready in Stream p50 / p99 {ms('ready_s')}",
                f"202 {ms('answered_s')}; route 200 {ms('synced_s')}",
                f"backlog drained in {r['drain_s']:.1f} s; first request "
                f"{r['first_request']['ready_s'] * 1000:,.0f} ms",
            )
        )
    return rows


def _copy_rows(results: list[dict[str, Any]]) -> list[Row]:
    return [
        (
            f"one conversation's history copy, {r['messages']:,} messages, "
            f"{r['latency_ms']:g} ms a SendMessage, lease {r['lease_s']:g} s",
            f"{r['messages_per_s']:,.1f} messages/s",
            f"{r['seconds']:.1f} s",
            f"{r['jobs']} jobs",
        )
        for r in results
    ]


def _limiter_rows(results: dict[str, dict[str, float]]) -> list[Row]:
    labels = {"budget": "the rate budget", "dramatiq": "Dramatiq's BucketRateLimiter"}
    return [
        (
            f"limiter: {labels.get(name, name)}",
            f"{r['per_s']:,.0f} slots/s",
            f"{r['cpu_us']:,.1f} us CPU a slot",
            f"{r['commands']:.2f} Redis commands a slot",
        )
        for name, r in results.items()
    ]


def _emulator_load_rows(results: list[dict[str, Any]]) -> list[Row]:
    rows: list[Row] = []
    for r in results:
        core = f"~{r['calls_per_cpu_s']:,.0f} calls/s per core" if r["calls_per_cpu_s"] else ""
        rows.append(
            (
                f"emulator load: {r['scenario']}, {r['processes']} process(es) x "
                f"{r['threads']} threads",
                f"{r['calls_per_s']:,.0f} calls/s",
                f"{r['users_per_s']:,.0f} users/s",
                f"server CPU {r['server_cpu']:.0%} {core}".strip(),
            )
        )
    return rows


def _emulator_webhook_row(r: dict[str, Any]) -> Row:
    cap = f"at most {r['rate_cap']:g}/s" if r["rate_cap"] else "unpaced"
    return (
        f"emulator webhooks: {r['messages']:,} messages, {r['threads']} threads, {cap}",
        f"sent {r['sent_per_s']:,.0f}/s, webhooks {r['webhooks_per_s'] or 0:,.0f}/s",
        f"lag p50 {r['lag_p50_ms']:.1f} / p99 {r['lag_p99_ms']:.1f} ms",
        f"max {r['lag_max_ms']:.1f} ms",
    )


def _emulator_webhook_rows(results: list[dict[str, Any]]) -> list[Row]:
    return [_emulator_webhook_row(r) for r in results]


def _emulator_import_rows(results: list[dict[str, Any]]) -> list[Row]:
    return [
        (
            f"emulator import: {r['messages']:,} messages ({r['file_mb']} MB)",
            f"{r['import_s']:.1f} s ({r['messages_per_s']:,}/s)",
            f"upload {r['upload_s']} s, analysis {r['analyze_s']} s, apply {r['apply_s']} s",
            f"emulator peak RSS {r['emulator_peak_rss_mb']:,} MB",
        )
        for r in results
    ]


def _admin_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for name in ("error_groups", "series_hour", "series_day"):
        if name in r:
            rows.append(
                (
                    f"admin query: {name}",
                    f"median {r[name]['median_ms']} ms",
                    "",
                    f"{r['done_rows']:,} done rows, {r['failed_rows']:,} failed",
                )
            )
    return rows


def _flat(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [kv for k, v in value.items() for kv in _flat(f"{prefix}.{k}", v)]
    if isinstance(value, list):
        return [kv for n, v in enumerate(value) for kv in _flat(f"{prefix}[{n}]", v)]
    return [(prefix, value)]


def _generic_rows(name: str, results: Any) -> list[Row]:
    """A section whose module has no ``rows``: every figure, one a row."""
    try:
        module_rows = getattr(importlib.import_module(f"benchmarks.{name}"), "rows", None)
    except ImportError:
        module_rows = None
    if callable(module_rows):
        return list(module_rows(results))
    return [(f"{name}: {key.lstrip('.')}", f"{value}", "", "") for key, value in _flat("", results)]


def stamp(results: dict[str, Any]) -> str:
    """Where and when: the machine's line and the run's date (``quick`` sizes said)."""
    from benchmarks import machine

    quick = " (--quick sizes)" if results.get("quick") else ""
    return f"{machine.summary(results.get('machine', {}))}; {results.get('date', '')}{quick}"


def _module_rows(module: str) -> Callable[[Any], list[Row]]:
    """The ``rows`` function of ``benchmarks.<module>``, imported when called."""

    def rows(results: Any) -> list[Row]:
        return list(importlib.import_module(f"benchmarks.{module}").rows(results))

    return rows


# Each key of the results, in the table's order, and the rows it makes
ROWS: tuple[tuple[str, Callable[[Any], list[Row]]], ...] = (
    ("write_path", _write_rows),
    ("copy_load", _module_rows("copy_load")),
    ("after_copy", _module_rows("after_copy")),
    ("e2e", _e2e_rows),
    ("drain", _drain_rows),
    ("rate_limited", _rate_rows),
    ("rate_limited_stream", lambda r: _rate_rows(r, "the same, Stream's own limits")),
    ("ceiling", _module_rows("ceiling")),
    ("history_export", _module_rows("history_export")),
    ("verify_at_scale", _module_rows("verify_at_scale")),
    ("budget", _module_rows("budget")),
    ("inbound", _inbound_rows),
    ("inbound_lag", _inbound_lag_rows),
    ("chat_latency", _chat_rows),
    ("on_demand", _on_demand_rows),
    ("history_copy", _copy_rows),
    ("rate_budget", _limiter_rows),
    ("emulator_load", _emulator_load_rows),
    ("emulator_webhooks", _emulator_webhook_rows),
    ("emulator_import", _emulator_import_rows),
    ("admin_queries", _admin_rows),
    ("operators_views", lambda r: _generic_rows("operators_views", r)),
)


def rows(results: dict[str, Any]) -> list[Row]:
    """Every row of the sections present."""
    return [row for key, make in ROWS if key in results for row in make(results[key])]


def table(results: dict[str, Any]) -> str:
    """A Markdown table of every section present, under the machine and the date."""
    lines = [stamp(results), "", "| benchmark | figure | figure | note |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows(results)]
    return "\n".join(lines)
