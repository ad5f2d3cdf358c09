"""The shared rate budget's cost and the Stream calls each change makes, in one run.

    uv run python -m benchmarks.budget [--conversations 10000] [--repeat 3] [--json PATH]

* **The budget's cost.** The ceiling's backlog (``benchmarks.ceiling``: new
  conversations among users already synced) drained at 0 ms and 50 ms of emulator
  latency with the emulator's limits off, by the worker's default settings (the shared
  budget on) and with ``OUTBOX_STREAM_LIMITS=false``, in pairs back to back,
  ``--repeat`` pairs a latency: the median conversations a second of each, their ratio,
  and the worker's CPU seconds per 1,000 conversations.
* **At Stream's limits.** The same backlog at 50 ms with Stream's default limits on in
  the emulator and the worker: the binding endpoint's pace against its limit, and 429s.
* **Calls per change.** ``benchmarks.mixed_calls``: renames, leaves with joins,
  deletions, messages sent and edited, against the fewest calls Stream could take.
* **A burst of new users.** ``benchmarks.user_burst``: new conversations among new users
  under Stream's limits, and the UpdateUsers calls they cost.

Prints one table, with the machine and the date.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks import ceiling, mixed_calls, user_burst
from tests.support.database import outbox_database


def budget_cost(template: str, conversations: int, latency: float, repeat: int) -> dict[str, Any]:
    """``repeat`` pairs of drains (budget on, then off) at ``latency``; their medians."""
    runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for _ in range(repeat):
        for budget in (True, False):
            run = ceiling.run(template, conversations, latency, False, budget)
            runs[budget].append(run)
            ceiling.print_run(run)

    def median(on: bool, key: str) -> float:
        return statistics.median(r[key] for r in runs[on])

    on, off = median(True, "conversations_per_s"), median(False, "conversations_per_s")
    return {
        "latency_ms": latency,
        "budget_on_conv_s": on,
        "budget_off_conv_s": off,
        "ratio": on / off,
        "cpu_s_per_1000_on": median(True, "worker_cpu_s_per_1000"),
        "cpu_s_per_1000_off": median(False, "worker_cpu_s_per_1000"),
        "runs": runs[True] + runs[False],
    }


def measure(conversations: int, repeat: int) -> dict[str, Any]:
    """Every figure of the module's docstring, in one run."""
    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with outbox_database("stream_outbox_budget") as template:
        ceiling.fill(template, conversations)
        results["cost"] = [budget_cost(template, conversations, ms, repeat) for ms in (0, 50)]
        results["limits"] = ceiling.run(template, conversations, 50, True)
        ceiling.print_run(results["limits"])
    results["mixed"] = mixed_calls.measure(600, 200)
    results["burst"] = user_burst.measure(1000, 600, 2, 50.0)
    return results


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The figures as rows: measure, default settings, budget off, ratio or note."""
    out: list[tuple[str, str, str, str]] = []
    for cost in results["cost"]:
        ms = f"{cost['latency_ms']:.0f} ms"
        out.append(
            (
                f"drain at {ms}, conversations/s (median)",
                f"{cost['budget_on_conv_s']:,.0f}",
                f"{cost['budget_off_conv_s']:,.0f}",
                f"**{cost['ratio']:.1%}**",
            )
        )
        out.append(
            (
                f"worker CPU s per 1,000 conversations at {ms}",
                f"{cost['cpu_s_per_1000_on']:.2f}",
                f"{cost['cpu_s_per_1000_off']:.2f}",
                "",
            )
        )
    limits = results["limits"]
    out.append(
        (
            "Stream's limits on, 50 ms",
            f"{limits['conversations_per_s']:.0f} conv/s",
            "",
            f"{ceiling.BINDING} at **{limits['binding_fraction']:.1%}** of its limit, "
            f"{limits['429s']} x 429",
        )
    )
    mixed = results["mixed"]
    out.append(
        (
            f"mixed workload: {mixed['calls']} calls for {sum(mixed['rows'].values())} rows",
            f"{mixed['calls_per_row']:.2f} calls/row",
            "",
            f"**{mixed['calls_over_fewest']:.2f}x** the fewest for its mix "
            f"({mixed['fewest_calls']})",
        )
    )
    burst = results["burst"]
    out.append(
        (
            f"{burst['conversations']:,} new conversations among {burst['users']} new users, "
            "Stream's limits",
            f"{burst['conversations_per_s']:.0f} conv/s",
            "",
            f"**{burst['update_users']} UpdateUsers**, {burst['429s']} x 429",
        )
    )
    return out


def table(results: dict[str, Any]) -> str:
    """The figures as a Markdown table."""
    lines = ["| measure | default settings | budget off | ratio or note |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows(results)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    results = measure(args.conversations, args.repeat)
    print(f"\nMeasured {results['when']}\n")
    print(table(results))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
