"""Write the figures the README and the docs quote from a benchmark run's results.

    uv run python -m benchmarks.readme [--results benchmarks/results/latest.json] [--check]

A document holds each generated part between two marker comments naming what goes there:
``<!-- benchmarks:readme:start -->`` (the README's table and "Also measured"),
``<!-- benchmarks:run:start -->`` (the run's machine and each section's date), or
``<!-- benchmarks:chat,inbound:start -->`` (those sections' rows, with machine and date),
each closed by the same name with ``:end``. Only those parts are rewritten; a section the
results lack is said to be missing, its figures removed. ``--check`` writes nothing and
exits 1 when a document differs from what the results would write. Results of a
``--quick`` run are refused unless ``--allow-quick`` (with ``--root``, to try the output on
a copy of the documents).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "latest.json"
README_MARKS = ("<!-- benchmarks:readme:start -->", "<!-- benchmarks:readme:end -->")
# The documents that may hold generated parts
DOCUMENTS = ("README.md", "docs/*.md", "stream_outbox/emulator/README.md")
_START = re.compile(r"<!-- benchmarks:([a-z0-9_,]+):start -->")
# Each section of ``python -m benchmarks`` and the results' keys it writes
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "write": ("write_path", "copy_load", "after_copy"),
    "e2e": ("e2e",),
    "drain": ("drain", "ceiling"),
    "rate": ("rate_limited", "rate_limited_stream"),
    "history": ("history_export",),
    "verify": ("verify_at_scale",),
    "budget": ("budget",),
    "inbound": ("inbound", "inbound_lag"),
    "chat": ("chat_latency",),
    "on_demand": ("on_demand",),
    "copy": ("history_copy",),
    "limiter": ("rate_budget",),
    "emulator": ("emulator_load", "emulator_webhooks", "emulator_import"),
    "admin": ("admin_queries",),
    "ops": ("operators_views",),
}


class MarkersError(ValueError):
    """A document lacks its markers, or holds them out of order."""


def splice(text: str, marks: tuple[str, str], body: str) -> str:
    """``text`` with what lies between the two markers replaced by ``body``."""
    start, end = marks
    if text.count(start) != 1 or text.count(end) != 1:
        raise MarkersError(f"expected one {start} and one {end}")
    head, rest = text.split(start)
    if end in head:
        raise MarkersError(f"{end} comes before {start}")
    _, tail = rest.split(end)
    return f"{head}{start}\n{body.strip()}\n{end}{tail}"


def _by_latency(runs: list[dict[str, Any]], latency: float) -> dict[str, Any] | None:
    return next((r for r in runs if r.get("latency_ms") == latency), None)


def _chat(r: dict[str, Any]) -> str | None:
    runs = [x for x in r["chat_latency"] if x.get("gap_s") == 1.0]
    zero, fifty = _by_latency(runs, 0.0), _by_latency(runs, 50.0)
    if zero is None:
        return None
    text = (
        "a message posted through the legacy endpoint, from its commit to its rendering in "
        "the other user's stream-chat-react page in Chromium, "
        f"**p50 {zero['p50_ms']:.1f} ms, p99 {zero['p99_ms']:.1f} ms** at 0 ms emulator latency"
    )
    if fifty is not None:
        text += f" and p99 {fifty['p99_ms']:.1f} ms at 50 ms"
    return text + f" (`benchmarks.chat_latency`, {zero['messages']} messages each)"


def _inbound(r: dict[str, Any]) -> str:
    i = r["inbound_lag"]["inbound"]
    return (
        "dual mode's inbound path, a client's message in the app's table at "
        f"p50 {i['lag_ms_p50']:.1f} ms, p99 {i['lag_ms_p99']:.1f} ms (`benchmarks.inbound_lag`)"
    )


def _write(r: dict[str, Any]) -> str | None:
    w = _by_latency(r["write_path"], 0.0)
    if w is None:
        return None
    text = f"the app's commit with the capture listeners {w['ratio_hooks_baseline']:.2f}x without"
    if "ratio_triggers_hooks" in w:
        text += f", with the capture triggers {w['ratio_triggers_hooks']:.2f}x the listeners' cost"
    return text + " (`benchmarks.write_path`)"


def _e2e(r: dict[str, Any]) -> str | None:
    e = next((x for x in r["e2e"] if x["listen"] and x["latency_ms"] == 0.0), None)
    if e is None:
        return None
    return (
        f"commit-to-Stream p50 {e['p50_ms']:.1f} ms, p99 {e['p99_ms']:.1f} ms "
        "(`benchmarks.e2e_latency`, LISTEN/NOTIFY, 0 ms a call)"
    )


def _history(r: dict[str, Any]) -> str | None:
    exports = r["history_export"]["exports"]
    if not exports:
        return None
    big = max(exports, key=lambda x: x["messages"])
    return (
        f"a {big['messages']:,}-message history exported in {big['seconds']:.0f} s, peak RSS "
        f"{big['peak_rss_mb']:.0f} MB (`benchmarks.history_export`)"
    )


def _on_demand(r: dict[str, Any]) -> str | None:
    run = next((x for x in r["on_demand"] if x["run"] == "default worker"), None)
    if run is None:
        return None
    return (
        f"an on-demand migration ready in Stream at p99 {run['ready_s']['p99'] * 1000:,.0f} ms "
        f"while {run['backlog']['rows']:,} rows drain (`benchmarks.on_demand`)"
    )


# The "Also measured" clauses, in order: the results' key each needs, and its text
ALSO: tuple[tuple[str, Callable[[dict[str, Any]], str | None]], ...] = (
    ("chat_latency", _chat),
    ("inbound_lag", _inbound),
    ("write_path", _write),
    ("e2e", _e2e),
    ("history_export", _history),
    ("on_demand", _on_demand),
)


def readme_part(results: dict[str, Any]) -> str:
    """The README's generated part: where and when, the budget's table, the other figures."""
    lines = [
        f"Measured in one run of `uv run python -m benchmarks` on {report.stamp(results)} "
        "(`benchmarks/results/latest.json`; [every figure and how it is measured]"
        "(docs/benchmarks.md)).",
    ]
    if "budget" in results:
        from benchmarks import budget

        lines += [
            "",
            "The drain of new conversations with default settings (the shared rate budget on) "
            "beside `OUTBOX_STREAM_LIMITS=false`, then under Stream's own limits, the calls a "
            "mixed workload makes and a burst of new users (`benchmarks.budget`):",
            "",
            budget.table(results["budget"]),
        ]
    clauses = [text for key, make in ALSO if key in results and (text := make(results))]
    if clauses:
        lines += ["", "Also measured: " + "; ".join(clauses) + "."]
    return "\n".join(lines)


def marks(name: str) -> tuple[str, str]:
    """The two marker comments of the part ``name``."""
    return f"<!-- benchmarks:{name}:start -->", f"<!-- benchmarks:{name}:end -->"


def run_part(results: dict[str, Any]) -> str:
    """The run: machine and date, each section's date and time."""
    lines = [report.stamp(results), "", "| section | measured | took |", "|---|---|---|"]
    for name, section in results.get("sections", {}).items():
        lines.append(f"| `{name}` | {section['date']} | {section['seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def sections_part(results: dict[str, Any], names: list[str]) -> str:
    """The rows of the named sections, under the machine and their dates."""
    unknown = [n for n in names if n not in SECTION_KEYS]
    if unknown:
        raise MarkersError(f"unknown section(s) {', '.join(unknown)} in a marker")
    held = [n for n in names if n in results.get("sections", {})]
    missing = [n for n in names if n not in held]
    lines: list[str] = []
    if held:
        from benchmarks import machine

        dates = ", ".join(f"`{n}` {results['sections'][n]['date']}" for n in held)
        keys = {k for n in held for k in SECTION_KEYS[n]}
        only = {k: v for k, v in results.items() if k in keys}
        lines += [
            f"{machine.summary(results.get('machine', {}))}; {dates}"
            + (" (--quick sizes)" if results.get("quick") else ""),
            "",
            "| benchmark | figure | figure | note |",
            "|---|---|---|---|",
        ]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in report.rows(only)]
    if missing:
        run = ",".join(missing)
        lines += [""] if lines else []
        lines.append(f"Not in the committed run: `python -m benchmarks --only {run}`.")
    return "\n".join(lines)


def part(name: str, results: dict[str, Any]) -> str:
    """The generated part called ``name``."""
    if name == "readme":
        return readme_part(results)
    if name == "run":
        return run_part(results)
    return sections_part(results, name.split(","))


def render(text: str, results: dict[str, Any]) -> str:
    """``text`` with every generated part written from ``results``."""
    for name in dict.fromkeys(_START.findall(text)):
        text = splice(text, marks(name), part(name, results))
    return text


def documents(root: Path) -> list[Path]:
    """The documents that hold a generated part."""
    paths = sorted({p for pattern in DOCUMENTS for p in root.glob(pattern)})
    return [p for p in paths if _START.search(p.read_text())]


def rendered(root: Path, results: dict[str, Any]) -> dict[Path, tuple[str, str]]:
    """Each document's path: its text now, and as the results would write it."""
    out: dict[Path, tuple[str, str]] = {}
    for path in documents(root):
        text = path.read_text()
        out[path] = (text, render(text, results))
    return out


def load(path: Path) -> dict[str, Any]:
    """The results file, or a one-line error."""
    try:
        results: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"{path}: no results; run `uv run python -m benchmarks` first") from None
    except ValueError as exc:
        raise SystemExit(f"{path}: not JSON ({exc})") from None
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--results", default=str(RESULTS), help="a benchmark run's results")
    parser.add_argument("--root", default=str(ROOT), help="the folder holding README.md")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on a change")
    parser.add_argument("--allow-quick", action="store_true", help="accept a --quick run's figures")
    args = parser.parse_args()
    results = load(Path(args.results))
    if results.get("quick") and not args.allow_quick:
        raise SystemExit(f"{args.results}: figures of a --quick run; the documents quote full runs")
    try:
        documents = rendered(Path(args.root), results)
    except (OSError, MarkersError) as exc:
        raise SystemExit(f"benchmarks.readme: {exc}") from None
    changed = [path for path, (now, new) in documents.items() if now != new]
    for path in changed:
        print(f"{path}: {'differs from the results' if args.check else 'rewritten'}")
        if not args.check:
            path.write_text(documents[path][1])
    if args.check and changed:
        sys.exit(1)


if __name__ == "__main__":
    main()
