"""The Stream emulator in a process of its own, for the benchmarks.

    python -m benchmarks.emulator_proc [--latency-ms 0] [--rate-limits '{"SendMessage": 1000}']
        [--stream-limits]

Without ``--stream-limits`` only the ``--rate-limits`` given apply (per window, no
per-second limit): the benchmarks measure the pipeline, or pace it with their own table.

Prints ``listening on PORT`` once it serves; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading

from stream_outbox.emulator import Emulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-limits", default="{}", help="JSON: endpoint -> calls per window")
    parser.add_argument("--window-seconds", type=float, default=60.0)
    parser.add_argument(
        "--stream-limits", action="store_true", help="Stream's published limits, per second too"
    )
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emulator = Emulator(
        port=0,
        latency_ms=args.latency_ms,
        rate_limits=json.loads(args.rate_limits),
        window_seconds=args.window_seconds,
        stream_limits=args.stream_limits,
    )
    with emulator:
        print(f"listening on {emulator.port}", flush=True)
        while not stop.wait(0.5):
            pass


if __name__ == "__main__":
    main()
