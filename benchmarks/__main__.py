"""Run every benchmark the README and docs quote; print the figures; write them, dated.

Against real PostgreSQL, real Redis and the emulator; the machine is recorded with them.

    uv run python -m benchmarks [--quick] [--only write,e2e,...] [--latency-ms 0,50]

Each section calls its modules' ``measure(...)`` (each module also runs alone). A full run
writes ``benchmarks/results/latest.json`` (committed: the README's and the docs' figures
are generated from it by ``python -m benchmarks.readme``); ``--quick`` writes
``benchmarks/results/quick.json``. With ``--only``, the sections run are merged into the
file's others when the machine is the same; each section keeps its own date.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import machine, report

RESULTS_DIR = Path(__file__).parent / "results"
RESULTS = RESULTS_DIR / "latest.json"
QUICK_RESULTS = RESULTS_DIR / "quick.json"

FULL: dict[str, Any] = {
    "tx0": 1500,
    "tx": 200,
    "e2e_s": 20.0,
    "rows": 100_000,
    "naive": 3_000,
    "conv": 150,
    "history": [250_000, 1_000_000],
    "ceiling": 10_000,
    "copy_conversations": 1_000,  # x 100 participants: 100,000 rows
    "after_copy_users": 1_000_000,
    "verify": (100_000, 150_000),  # channels; messages of one conversation
    "budget": (10_000, 3),  # conversations; back-to-back pairs
    "inbound": (5_000, 16, 50),  # webhooks, client threads, channels
    "inbound_lag": (100, 20.0),  # messages, per second
    "chat": 100,  # messages at each latency
    "on_demand": (1.0, 50, 15.0),  # backlog scale, requests, spread (s)
    "copy": [(2_000, 0.0, 120.0), (300, 50.0, 120.0), (300, 50.0, 10.0)],
    "limiter": (8, 2_000, 3),  # threads, slots each, best of
    "emulator_s": 5.0,
    "webhooks": [(2_000, 4, 16, 0.0), (400, 2, 16, 20.0)],
    "import": [(1_000_000, 1_000), (100_000, 1_000)],
    "admin": (1_000_000, 5_000, 7),  # done rows, failed rows, runs
    "ops": [1_000_000, 10_000_000],
}
QUICK: dict[str, Any] = {
    "tx0": 300,
    "tx": 40,
    "e2e_s": 5.0,
    "rows": 10_000,
    "naive": 1_000,
    "conv": 30,
    "history": [20_000, 80_000],
    "ceiling": 2_000,
    "copy_conversations": 100,
    "after_copy_users": 100_000,
    "verify": (10_000, 20_000),
    "budget": (2_000, 1),
    "inbound": (1_000, 8, 20),
    "inbound_lag": (40, 20.0),
    "chat": 20,
    "on_demand": (0.1, 10, 5.0),
    "copy": [(300, 0.0, 120.0), (60, 50.0, 120.0), (60, 50.0, 2.0)],
    "limiter": (4, 500, 1),
    "emulator_s": 2.0,
    "webhooks": [(400, 4, 16, 0.0), (100, 2, 16, 20.0)],
    "import": [(100_000, 100)],
    "admin": (100_000, 1_000, 3),
    "ops": [100_000, 1_000_000],
}

Section = Callable[[dict[str, Any], list[float]], dict[str, Any]]


def _write(size: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    from benchmarks import after_copy, copy_load, write_path

    return {
        "write_path": [
            write_path.measure(size["tx0"] if lat == 0 else size["tx"], lat) for lat in latencies
        ],
        "copy_load": copy_load.measure(size["copy_conversations"], 100, 3),
        "after_copy": after_copy.measure(size["after_copy_users"], 200),
    }


def _e2e(size: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    from benchmarks import e2e_latency

    runs: list[dict[str, Any]] = []
    for n, lat in enumerate(latencies):
        modes: list[tuple[bool, dict[str, str]]] = [(True, {})]
        if n == 0:
            modes.append((False, {}))  # polling only
        runs += e2e_latency.measure(lat, 20.0, size["e2e_s"], modes)
    return {"e2e": runs}


def _drain(size: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    from benchmarks import ceiling, drain

    return {
        "drain": drain.measure(size["rows"], [1, 2], size["naive"]),
        # new conversations at real latencies, Stream's limits off and on
        "ceiling": ceiling.measure(size["ceiling"], [0.0, 50.0, 150.0]),
    }


def _rate(size: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    from benchmarks import rate_limited

    return {
        "rate_limited": rate_limited.measure(size["conv"], 8),
        "rate_limited_stream": rate_limited.measure(size["conv"], 8, defaults=True),
    }


def _history(size: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    from benchmarks import history_export

    # 20 messages a conversation; files under the emulator's 32 MiB
    most = max(size["history"])
    return {"history_export": history_export.measure(size["history"], most // 50, most // 20, 30)}


def _verify(size: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    from benchmarks import verify_at_scale

    return {"verify_at_scale": verify_at_scale.measure(*size["verify"])}


def _budget(size: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    from benchmarks import budget

    return {"budget": budget.measure(*size["budget"])}


def _inbound(size: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    from benchmarks import inbound, inbound_lag

    return {
        "inbound": inbound.measure(*size["inbound"]),
        "inbound_lag": inbound_lag.measure(*size["inbound_lag"]),
    }


def _chat(size: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    from benchmarks import chat_latency

    # one a second, then back to back at 0 ms (the page's 500 ms throttle shows)
    paced = chat_latency.measure(latencies, size["chat"], 1.0)
    return {"chat_latency": paced + chat_latency.measure([0.0], size["chat"], 0.0)}


def _on_demand(size: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    from benchmarks import on_demand

    return {"on_demand": on_demand.measure(*size["on_demand"])}


def _copy(size: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    from benchmarks import history_copy

    return {"history_copy": [history_copy.measure(*run) for run in size["copy"]]}


def _limiter(size: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    from benchmarks import rate_budget

    return {"rate_budget": rate_budget.measure(*size["limiter"])}


def _emulator(size: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    from benchmarks import emulator_import, emulator_load, emulator_webhooks

    return {
        "emulator_load": emulator_load.measure(size["emulator_s"], [(1, 4), (2, 2)]),
        "emulator_webhooks": [emulator_webhooks.measure(*run) for run in size["webhooks"]],
        "emulator_import": [emulator_import.measure(*run) for run in size["import"]],
    }


def _admin(size: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    from benchmarks import admin_queries

    return {"admin_queries": admin_queries.measure(*size["admin"])}


def _ops(size: dict[str, Any], latencies: list[float]) -> dict[str, Any]:
    if importlib.util.find_spec("benchmarks.operators_views") is None:
        print("ops: benchmarks/operators_views.py is not here; skipped", file=sys.stderr)
        return {}
    from benchmarks import operators_views  # type: ignore[attr-defined,unused-ignore]

    return {"operators_views": operators_views.measure(size["ops"])}


# In run order; the minutes a full run of each took or is expected to take on 2 cores
SECTIONS: dict[str, tuple[Section, int]] = {
    "write": (_write, 5),
    "e2e": (_e2e, 2),
    "drain": (_drain, 9),
    "rate": (_rate, 3),
    "history": (_history, 3),
    "verify": (_verify, 5),
    "budget": (_budget, 6),
    "inbound": (_inbound, 2),
    "chat": (_chat, 6),
    "on_demand": (_on_demand, 5),
    "copy": (_copy, 1),
    "limiter": (_limiter, 1),
    "emulator": (_emulator, 2),
    "admin": (_admin, 1),
    "ops": (_ops, 10),
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def chosen(only: str) -> list[str]:
    """The sections ``--only`` names, in run order; every one when empty."""
    if not only:
        return list(SECTIONS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        known = ", ".join(SECTIONS)
        raise SystemExit(f"--only: unknown section(s) {', '.join(unknown)}; one of {known}")
    return [n for n in SECTIONS if n in names]


def start_from(path: Path, here: dict[str, Any], quick: bool, merge: bool) -> dict[str, Any]:
    """The results a run adds to: the file's, when merging on the same machine and sizes."""
    fresh: dict[str, Any] = {"machine": here, "quick": quick, "sections": {}}
    if not merge or not path.exists():
        return fresh
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return fresh
    if old.get("quick") != quick or not machine.same(old.get("machine", {}), here):
        print(f"{path}: another machine or size; its figures are replaced", file=sys.stderr)
        return fresh
    old.setdefault("sections", {})
    return old


def preflight(names: list[str]) -> None:
    """Stop at once, with one line, for what a chosen section would lack at its turn."""
    if "chat" in names:
        from tests.support.browser import missing_chromium
        from tests.support.chat_page import missing_build

        problem = missing_build() or missing_chromium()
        if problem is not None:
            raise SystemExit(f"chat: {problem} (`./dev page` builds the page; or leave out chat)")


def save(path: Path, results: dict[str, Any]) -> None:
    """Write the results file (after each section: an interrupted run keeps what it did)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Each chosen section in turn, merged into the results file's figures by section."""
    size = dict(QUICK if args.quick else FULL)
    if args.rows:
        size["rows"] = args.rows
    latencies = [float(x) for x in args.latency_ms.split(",")]
    names = chosen(args.only)
    preflight(names)
    here = machine.describe()
    out = start_from(Path(args.json_path), here, args.quick, merge=bool(args.only))
    out["latencies_ms"] = latencies
    print(f"{machine.summary(here)}; sections {', '.join(names)}", flush=True)
    for name in names:
        section, _ = SECTIONS[name]
        began, date = time.monotonic(), _now()
        try:
            figures = section(size, latencies)
        except Exception as exc:  # one section's failure keeps the others' figures
            print(f"section {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            out.setdefault("failed", {})[name] = f"{type(exc).__name__}: {exc}"
            continue
        if not figures:
            continue
        out.get("failed", {}).pop(name, None)
        out.update(figures)
        out["sections"][name] = {
            "date": date,
            "seconds": round(time.monotonic() - began),
            "keys": sorted(figures),
        }
        _date(out)
        save(Path(args.json_path), out)
    _date(out)
    return out


def _date(results: dict[str, Any]) -> None:
    dates = sorted(s["date"] for s in results["sections"].values()) or [_now()]
    results["date"] = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--latency-ms", default="0,50", help="emulator latencies, comma-separated")
    parser.add_argument("--only", default="", help=f"sections: {','.join(SECTIONS)}")
    parser.add_argument("--rows", type=int, default=0, help="drain backlog rows (default 100,000)")
    parser.add_argument("--json", dest="json_path", default="", help="the results file")
    args = parser.parse_args()
    args.json_path = args.json_path or str(QUICK_RESULTS if args.quick else RESULTS)
    started = time.monotonic()
    results = run(args)
    results["seconds"] = round(time.monotonic() - started)
    path = Path(args.json_path)  # written first: the figures outlive a fault in the table
    save(path, results)
    print(report.table(results))
    print(f"\nfigures written to {path} ({results['seconds']:.0f} s)")
    if results.get("failed"):
        raise SystemExit(f"sections failed: {', '.join(results['failed'])}")


if __name__ == "__main__":
    main()
