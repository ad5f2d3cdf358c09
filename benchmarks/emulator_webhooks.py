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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s in all (0: no cap)")
    args = parser.parse_args()

    with remote_emulator() as emu, WebhookReceiver() as receiver:
        admin = StreamChat(emu.api_key, emu.api_secret, base_url=emu.base_url)
        admin.upsert_user({"id": "alice"})
        channels = [f"bench-{n}" for n in range(args.channels)]
        for cid in channels:
            admin.channel("messaging", cid, {"members": ["alice"]}).create("alice")
        hook = {"enabled": True, "hook_type": "webhook", "webhook_url": receiver.url}
        admin.update_app_settings(event_hooks=[{**hook, "event_types": ["message.new"]}])

        per_thread = args.messages // args.threads
        pause = args.threads / args.rate if args.rate else 0.0
        clients = [
            StreamChat(emu.api_key, emu.api_secret, base_url=emu.base_url)
            for _ in range(args.threads)
        ]
        threads = [
            threading.Thread(target=_send, args=(c, channels, per_thread, k * per_thread, pause))
            for k, c in enumerate(clients)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        send_seconds = time.monotonic() - started
        total = per_thread * args.threads
        receiver.wait_for(total, timeout=120)
        emu.wait_webhooks(30)

        arrivals = [r.at for r in receiver.received]
        lags = [
            r.at - datetime.fromisoformat(r.event["message"]["created_at"]).timestamp()
            for r in receiver.received
        ]
        span = max(arrivals) - min(arrivals)
        print(f"messages sent:       {total} in {send_seconds:.2f} s", end=" ")
        print(f"({total / send_seconds:.0f}/s)")
        print(f"webhooks received:   {len(arrivals)} in {span:.2f} s", end=" ")
        print(f"({len(arrivals) / span:.0f}/s)")
        print(
            f"lag created->hook:   p50 {statistics.median(lags) * 1000:.1f} ms, "
            f"p99 {_percentile(lags, 0.99) * 1000:.1f} ms, max {max(lags) * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
