"""The one table the benchmark run prints (and docs/benchmarks.md holds), from the results."""

from __future__ import annotations

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


def _rate_rows(r: dict[str, Any]) -> list[Row]:
    return [
        (
            "backfill under Stream's limits",
            f"{r['conversations_per_s']:.2f} conv/s, {r['messages_per_s']:.1f} msg/s",
            f"SendMessage {r['send_message_per_min']:.0f}/min "
            f"(limit {r['send_message_limit_per_min']})",
            f"{r['calls_per_message']:.2f} calls/msg, {r['status_429']} x 429",
        ),
    ]


def table(results: dict[str, Any]) -> str:
    """A Markdown table of every section present."""
    rows: list[Row] = []
    if "write_path" in results:
        rows += _write_rows(results["write_path"])
    if "copy_load" in results:
        from benchmarks import copy_load

        rows += copy_load.rows(results["copy_load"])
    if "after_copy" in results:
        from benchmarks import after_copy

        rows += after_copy.rows(results["after_copy"])
    if "e2e" in results:
        rows += _e2e_rows(results["e2e"])
    if "drain" in results:
        rows += _drain_rows(results["drain"])
    if "rate_limited" in results:
        rows += _rate_rows(results["rate_limited"])
    if "ceiling" in results:
        from benchmarks import ceiling

        rows += ceiling.rows(results["ceiling"])
    if "history_export" in results:
        from benchmarks import history_export

        rows += history_export.rows(results["history_export"])
    if "verify_at_scale" in results:
        from benchmarks import verify_at_scale

        rows += verify_at_scale.rows(results["verify_at_scale"])
    machine = results.get("machine", {})
    lines = [
        f"{machine.get('cpus')} CPUs, {machine.get('model')}, {results.get('date', '')}",
        "",
        "| benchmark | figure | figure | note |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)
