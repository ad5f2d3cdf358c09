"""Run every benchmark against real PostgreSQL, real Redis and the emulator; print a table.

    uv run python -m benchmarks [--quick] [--latency-ms 0,50] [--only write,e2e,drain,rate,verify]

The ``write`` section runs the write path (listeners and triggers), the bulk load
(``benchmarks.copy_load``) and a statement after one in its transaction
(``benchmarks.after_copy``). Writes the figures to ``benchmarks/results/latest.json``
(``--json`` for another path).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks import (
    after_copy,
    ceiling,
    copy_load,
    drain,
    e2e_latency,
    history_export,
    rate_limited,
    report,
    verify_at_scale,
    write_path,
)

RESULTS = Path(__file__).parent / "results" / "latest.json"
SECTIONS = ("write", "e2e", "drain", "rate", "history", "verify")
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
}


def _machine() -> dict[str, Any]:
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "model": model, "python": platform.python_version()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Each chosen section in turn; the figures by section."""
    size = QUICK if args.quick else FULL
    latencies = [float(x) for x in args.latency_ms.split(",")]
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    out: dict[str, Any] = {"machine": _machine(), "quick": args.quick, "latencies_ms": latencies}
    out["date"] = time.strftime("%Y-%m-%d %H:%M")
    if "write" in only:
        out["write_path"] = [
            write_path.measure(size["tx0"] if lat == 0 else size["tx"], lat) for lat in latencies
        ]
        out["copy_load"] = copy_load.measure(size["copy_conversations"], 100, 3)
        out["after_copy"] = after_copy.measure(size["after_copy_users"], 200)
    if "e2e" in only:
        out["e2e"] = []
        for n, lat in enumerate(latencies):
            modes: list[tuple[bool, dict[str, str]]] = [(True, {})]
            if n == 0:
                modes.append((False, {}))  # polling only
            out["e2e"] += e2e_latency.measure(lat, 20.0, size["e2e_s"], modes)
    if "drain" in only:
        out["drain"] = drain.measure(args.rows or size["rows"], [1, 2], size["naive"])
        # new conversations at real latencies, Stream's limits off and on
        out["ceiling"] = ceiling.measure(size["ceiling"], [0.0, 50.0, 150.0])
    if "rate" in only:
        out["rate_limited"] = rate_limited.measure(size["conv"], 8)
    if "history" in only:  # 20 messages a conversation; files under the emulator's 32 MiB
        most = max(size["history"])
        out["history_export"] = history_export.measure(size["history"], most // 50, most // 20, 30)
    if "verify" in only:  # admin verify under Stream's default limits
        out["verify_at_scale"] = verify_at_scale.measure(*size["verify"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about 2 minutes)")
    parser.add_argument("--latency-ms", default="0,50", help="emulator latencies, comma-separated")
    parser.add_argument("--only", default="", help=f"sections: {','.join(SECTIONS)}")
    parser.add_argument("--rows", type=int, default=0, help="drain backlog rows (default 100,000)")
    parser.add_argument("--json", dest="json_path", default=str(RESULTS))
    args = parser.parse_args()
    started = time.monotonic()
    results = run(args)
    results["seconds"] = time.monotonic() - started
    print(report.table(results))
    path = Path(args.json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nfigures written to {path} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
