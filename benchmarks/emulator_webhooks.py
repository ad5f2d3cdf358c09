"""How fast the Stream emulator sends webhooks, and how long after a change they arrive.

The emulator runs in its own process (``RemoteEmulator``); ``--threads`` SDK clients send
``--messages`` messages in all, spread over ``--channels`` channels, at most ``--rate``
messages a second (0: as fast as they can), to a hook for ``message.new`` served by the
test suite's ``WebhookReceiver`` in this process. Prints the sends per second, the
webhooks per second (first to last arrival) and the lag from each message's
``created_at`` (the emulator's clock) to its webhook's arrival, p50/p99/max.

    uv run python -m benchmarks.emulator_webhooks --messages 2000 --threads 4
    uv run python -m benchmarks.emulator_webhooks --messages 400 --threads 2 --rate 20
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from datetime import datetime
from typing import Any

from stream_chat import StreamChat

from tests.support.emulator import remote_emulator
from tests.support.webhook_receiver import WebhookReceiver


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _send(client: StreamChat, channels: list[str], count: int, offset: int, pause: float) -> None:
    for n in range(count):
        started = time.monotonic()
        cid = channels[(offset + n) % len(channels)]
        client.channel("messaging", cid).send_message({"text": f"m{offset}-{n}"}, "alice")
        if pause:
            time.sleep(max(0.0, pause - (time.monotonic() - started)))


def measure(messages: int, threads: int, channels: int, rate: float = 0.0) -> dict[str, Any]:
    """Send the messages, wait for their webhooks; the rates and the lag, in one dict."""
    with remote_emulator() as emu, WebhookReceiver() as receiver:
        admin = StreamChat(emu.api_key, emu.api_secret, base_url=emu.base_url)
        admin.upsert_user({"id": "alice"})
        names = [f"bench-{n}" for n in range(channels)]
        for cid in names:
            admin.channel("messaging", cid, {"members": ["alice"]}).create("alice")
        hook = {"enabled": True, "hook_type": "webhook", "webhook_url": receiver.url}
        admin.update_app_settings(event_hooks=[{**hook, "event_types": ["message.new"]}])

        per_thread = messages // threads
        pause = threads / rate if rate else 0.0
        clients = [
            StreamChat(emu.api_key, emu.api_secret, base_url=emu.base_url) for _ in range(threads)
        ]
        workers = [
            threading.Thread(target=_send, args=(c, names, per_thread, k * per_thread, pause))
            for k, c in enumerate(clients)
        ]
        started = time.monotonic()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        send_seconds = time.monotonic() - started
        total = per_thread * threads
        receiver.wait_for(total, timeout=120)
        emu.wait_webhooks(30)

        arrivals = [r.at for r in receiver.received]
        lags = [
            r.at - datetime.fromisoformat(r.event["message"]["created_at"]).timestamp()
            for r in receiver.received
        ]
    span = max(arrivals) - min(arrivals)
    return {
        "messages": total,
        "threads": threads,
        "rate_cap": rate,
        "send_s": send_seconds,
        "sent_per_s": total / send_seconds,
        "webhooks": len(arrivals),
        "webhooks_per_s": len(arrivals) / span if span else None,
        "lag_p50_ms": statistics.median(lags) * 1000,
        "lag_p99_ms": _percentile(lags, 0.99) * 1000,
        "lag_max_ms": max(lags) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s in all (0: no cap)")
    args = parser.parse_args()
    f = measure(args.messages, args.threads, args.channels, args.rate)
    print(f"messages sent:       {f['messages']} in {f['send_s']:.2f} s", end=" ")
    print(f"({f['sent_per_s']:.0f}/s)")
    print(f"webhooks received:   {f['webhooks']} ({f['webhooks_per_s'] or 0:.0f}/s)")
    print(
        f"lag created->hook:   p50 {f['lag_p50_ms']:.1f} ms, "
        f"p99 {f['lag_p99_ms']:.1f} ms, max {f['lag_max_ms']:.1f} ms"
    )


if __name__ == "__main__":
    main()
