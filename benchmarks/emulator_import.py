"""How fast the Stream emulator imports a history file, through the real SDK.

    uv run python -m benchmarks.emulator_import [--messages 1000000] [--channels 1000]

Writes an import file (users, channels, two members each, messages spread over the
channels in time order), starts the emulator in a process of its own
(``tests.support.emulator``), uploads the file to the URL ``create_import_url``
hands out, creates the import and polls it to its end. Prints the file size, the time
of each phase (from the task's history), messages per second and the emulator
process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from stream_chat import StreamChat

from tests.support.emulator import remote_emulator

FINAL = ("completed", "analyze_failed", "failed")


def write_file(path: Path, messages: int, channels: int) -> None:
    """Users, channels, members and ``messages`` messages, in Stream's order."""
    start = datetime(2020, 1, 1, tzinfo=UTC)
    with path.open("w") as out:

        def item(kind: str, data: dict[str, Any]) -> None:
            out.write(json.dumps({"type": kind, "data": data}, separators=(",", ":")) + "\n")

        for n in range(channels * 2):
            item("user", {"id": f"user-{n}", "name": f"User {n}"})
        for c in range(channels):
            item("channel", {"id": f"conv-{c}", "type": "messaging", "created_by": f"user-{2 * c}"})
        for c in range(channels):
            for n in (2 * c, 2 * c + 1):
                data = {"channel_type": "messaging", "channel_id": f"conv-{c}"}
                item("member", {**data, "user_id": f"user-{n}"})
        for m in range(messages):
            c = m % channels
            item(
                "message",
                {
                    "id": f"msg-{m:09d}",
                    "channel_type": "messaging",
                    "channel_id": f"conv-{c}",
                    "user": f"user-{2 * c + m % 2}",
                    "type": "regular",
                    "text": f"message number {m} of the history, with a few words in it",
                    "created_at": (start + timedelta(seconds=m)).isoformat().replace("+00:00", "Z"),
                },
            )


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def seconds_between(history: list[dict[str, Any]], state_from: str, state_to: str) -> float:
    """Time from entering ``state_from`` to entering ``state_to``."""
    times = {h["next_state"]: datetime.fromisoformat(h["created_at"]) for h in history}
    if state_from not in times or state_to not in times:
        return float("nan")
    return (times[state_to] - times[state_from]).total_seconds()


def measure(messages: int, channels: int) -> dict[str, Any]:
    """Write, upload and import; return the figures."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "history.jsonl"
        began = time.perf_counter()
        write_file(path, messages, channels)
        written = time.perf_counter() - began
        with remote_emulator() as emu:
            client = StreamChat(emu.api_key, emu.api_secret, base_url=emu.base_url, timeout=60)
            urls = client.create_import_url(path.name)
            began = time.perf_counter()
            with path.open("rb") as body:
                requests.put(urls["upload_url"], data=body, timeout=600).raise_for_status()
            uploaded = time.perf_counter() - began
            began = time.perf_counter()
            task = client.create_import(urls["path"], "upsert")["import_task"]
            while task["state"] not in FINAL:
                time.sleep(0.2)
                task = client.get_import(task["id"])["import_task"]
            total = time.perf_counter() - began
            rss = peak_rss_mb(emu.proc.pid)
        assert task["state"] == "completed", task.get("result")
        history = task["history"]
        return {
            "messages": messages,
            "file_mb": round(path.stat().st_size / 1e6, 1) if path.exists() else None,
            "write_s": round(written, 1),
            "upload_s": round(uploaded, 1),
            "analyze_s": round(seconds_between(history, "analyzing", "importing"), 1),
            "apply_s": round(seconds_between(history, "importing", "completed"), 1),
            "import_s": round(total, 1),
            "messages_per_s": round(messages / total),
            "emulator_peak_rss_mb": round(rss),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--channels", type=int, default=1_000)
    args = parser.parse_args()
    figures = measure(args.messages, args.channels)
    for name, value in figures.items():
        print(f"{name:>22}: {value}")


if __name__ == "__main__":
    main()
