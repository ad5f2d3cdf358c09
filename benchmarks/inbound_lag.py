"""Dual mode's inbound path, end to end: lag, and no echo either way.

    uv run python -m benchmarks.inbound_lag [--messages 200] [--rate 20]

The real ``stream-outbox relay``, ``worker`` and ``inbound`` run against an emulator
process whose webhooks go to the inbound process (the Procfile's three, on a scratch
database of the reference app). A conversation of two is synced to Stream first. Then:

* **Inbound lag.** A user sends ``--messages`` messages client-side (a user token, as the
  new frontend does) at ``--rate`` a second; each is timed from just before its send to
  its inbox row settled: ``settled_at`` is stamped as the applying ends, in the
  transaction that writes the app's message row, just before its commit. p50, p99, max.
  Goal: p99 at most 250 ms.
* **No echo, inbound.** The Stream calls made meanwhile beside the client's own sends:
  the inbound changes must cause none.
* **No echo, outbound.** The app writes ``--messages`` messages through its session; the
  worker sends them and Stream's webhooks come back: every one settled ``ignored``, and
  the app's message count grows by the app's own messages only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import sessionmaker
from stream_chat import StreamChat

import stream_outbox.app_hooks
from benchmarks.drain import _settle
from benchmarks.pipeline import Processes
from stream_outbox.app_hooks.outbox import inbox
from stream_outbox.app_hooks.reference import (
    Message,
)
from tests.support.database import outbox_database
from tests.support.emulator import RemoteEmulator, remote_emulator
from tests.support.processes import free_port, script, wait_for
from tests.support.story import group
from tests.support.user_client import UserClient


def _inbox_settled(engine: Any) -> dict[str, tuple[str, datetime]]:
    """Settled inbox rows by message text: their status and when they settled (their
    applying ended, with the app's row written in the same transaction)."""
    text = inbox.c.payload["message"]["text"].as_string()
    query = select(text, inbox.c.status, inbox.c.settled_at).where(
        inbox.c.event_type == "message.new", inbox.c.settled_at.is_not(None)
    )
    with engine.connect() as conn:
        return {row[0]: (row[1], row[2]) for row in conn.execute(query)}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(messages: int, rate: float) -> dict[str, Any]:
    """Both halves; the figures."""
    port = free_port()
    with outbox_database("stream_outbox_inbound_lag") as url, remote_emulator() as emu:
        engine = create_engine(url)
        sessions = sessionmaker(engine, expire_on_commit=False)
        stream_outbox.app_hooks.install(sessions)
        server = StreamChat(emu.api_key, emu.api_secret, base_url=emu.base_url)
        hook = f"http://127.0.0.1:{port}/stream/webhook"
        server.update_app_settings(
            event_hooks=[{"hook_type": "webhook", "webhook_url": hook, "enabled": True}]
        )
        try:
            with Processes(url, emu, "inbound_lag", OUTBOX_INBOUND_PORT=str(port)) as procs:
                procs.worker(0)
                procs.relay()
                procs.start("inbound", script("stream-outbox", "inbound"), "inbound: Stream's")
                with sessions() as session, session.begin():
                    people, conversation = group(session, 2, "lag")
                _settle(url, timeout=120)
                (cid,) = _channels(emu)
                results = {
                    "inbound": _inbound(
                        emu, engine, server, cid, str(people[1].id), messages, rate
                    ),
                    "outbound_echo": _outbound_echo(
                        emu, engine, sessions, conversation.id, people[0].id, messages, url
                    ),
                }
        finally:
            engine.dispose()
    return results


def _channels(emu: RemoteEmulator) -> list[str]:
    return list(emu.state()["channels"])


def _inbound(
    emu: RemoteEmulator,
    engine: Any,
    server: StreamChat,
    cid: str,
    user_id: str,
    messages: int,
    rate: float,
) -> dict[str, Any]:
    client = UserClient(
        emu.base_url, emu.api_key, user_id, server.create_token(user_id), requests.Session()
    )
    emu.reset_request_counts()
    sent: dict[str, float] = {}
    start = time.time()
    for n in range(messages):
        text = f"client {n}"
        due = start + n / rate
        time.sleep(max(0.0, due - time.time()))
        sent[text] = time.time()
        client.send_message(cid, {"text": text})
    wait_for(
        lambda: len(_inbox_settled(engine).keys() & sent.keys()) == messages,
        "every client message applied",
        timeout=120,
    )
    settled = _inbox_settled(engine)
    lags = [(settled[text][1].timestamp() - at) * 1000 for text, at in sent.items()]
    counts = emu.request_counts()["counts"]
    others = {k: v for k, v in counts.items() if k != "SendMessage"}
    others["SendMessage"] = counts.get("SendMessage", 0) - messages
    with engine.connect() as conn:
        in_db = conn.scalar(select(func.count()).select_from(Message))
    return {
        "messages": messages,
        "rate": rate,
        "lag_ms_p50": statistics.median(lags),
        "lag_ms_p99": _percentile(lags, 0.99),
        "lag_ms_max": max(lags),
        "statuses": sorted({settled[text][0] for text in sent}),
        "app_messages": in_db,
        "stream_calls_besides_the_clients": {k: v for k, v in others.items() if v},
    }


def _outbound_echo(
    emu: RemoteEmulator,
    engine: Any,
    sessions: Any,
    conversation_id: Any,
    sender_id: Any,
    messages: int,
    url: str,
) -> dict[str, Any]:
    with engine.connect() as conn:
        before = conn.scalar(select(func.count()).select_from(Message))
    texts = [f"app {n}" for n in range(messages)]
    for text in texts:
        with sessions() as session, session.begin():
            session.add(Message(conversation_id=conversation_id, sender_id=sender_id, content=text))
    _settle(url, timeout=120)
    wait_for(
        lambda: len(_inbox_settled(engine).keys() & set(texts)) == messages,
        "every echo of the app's messages settled",
        timeout=120,
    )
    settled = _inbox_settled(engine)
    with engine.connect() as conn:
        after = conn.scalar(select(func.count()).select_from(Message))
    return {
        "app_messages_written": messages,
        "echoes": sorted({settled[text][0] for text in texts}),
        # the table grew by the app's own messages; anything beyond them the echoes wrote
        "rows_the_echoes_added": int(after or 0) - int(before or 0) - messages,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    results = measure(args.messages, args.rate)
    results["when"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(json.dumps(results, indent=2, default=str))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
