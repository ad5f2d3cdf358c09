"""``stream-outbox inbound`` as the Procfile runs it: a signed webhook is stored and
applied, a forged one refused, health and metrics answer; ``inbound sync`` catches up
from the emulator; SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import Engine, select
from stream_chat import StreamChat

from stream_outbox.app_hooks.outbox import inbox
from stream_outbox.emulator import Emulator
from tests.support.inbound import message_event, post_event
from tests.support.processes import (
    Run,
    free_port,
    script,
    serving,
    start,
    started_processes,
    stop,
    wait_for,
    wait_for_line,
)
from tests.support.redis import REDIS_PREFIX
from tests.support.settings import API_KEY, API_SECRET, BIN, clean_environ, product_env


@pytest.fixture()
def product(database_url: str, redis_url: str, emu: Emulator) -> dict[str, str]:
    """The product's variables (for the ``cli`` fixture, which adds the rest)."""
    emu.set_stream_limits(False)
    return product_env(
        database_url, redis_url, emu.base_url, prefix=REDIS_PREFIX, OUTBOX_STREAM_LIMITS="0"
    )


@pytest.fixture()
def env(product: dict[str, str]) -> dict[str, str]:
    """A process's whole environment: ours only, and the venv's scripts on the PATH."""
    return clean_environ(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONUNBUFFERED="1", **product
    )


@pytest.fixture()
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        yield session


def statuses(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(select(inbox.c.status).order_by(inbox.c.id)))


def test_the_inbound_process_stores_applies_answers_and_stops(
    env: dict[str, str],
    product: dict[str, str],
    clean_db: Engine,
    http: requests.Session,
    emu: Emulator,
    cli: Run,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with started_processes(env) as launch:
        # Given the process started as the Procfile does, on --port
        process = launch(*script("stream-outbox", "inbound", "--port", str(port)))
        serving(process, f"{base}/healthz")
        wait_for(lambda: http.get(f"{base}/healthz").status_code == 200, "alive")
        assert http.get(f"{base}/readyz", timeout=10).json()["status"] == "ready"
        alive = cli("health", "--port", str(port), **product)
        assert (alive.returncode, alive.stdout.startswith("alive")) == (0, True), alive
        # When Stream posts a signed event, and someone a forged one
        webhook = f"{base}/stream/webhook"
        assert post_event(http, webhook, message_event(), webhook_id="w-1").status_code == 200
        forged = post_event(http, webhook, message_event(), secret="x" * 40)
        assert forged.status_code == 401
        # Then the signed one is stored once and applied (settled) by the process's runner
        wait_for(lambda: statuses(clean_db) and "pending" not in statuses(clean_db), "settled")
        assert len(statuses(clean_db)) == 1
        metrics = http.get(f"{base}/metrics", timeout=5).text
        assert 'stream_outbox_inbound_webhooks_total{outcome="stored"} 1.0' in metrics
        assert 'stream_outbox_inbound_webhooks_total{outcome="bad_signature"} 1.0' in metrics
        # When messages were written in Stream that no webhook brought, inbound sync finds
        # them (once however often it runs), and the runner applies them
        client = StreamChat(API_KEY, API_SECRET, base_url=emu.base_url)
        client.upsert_users([{"id": "ann"}])
        channel = client.channel("messaging", "missed", {"members": ["ann"]})
        channel.create("ann")
        channel.send_message({"text": "while you were out"}, "ann")
        for stored in (1, 0):
            done = cli("inbound", "sync", "--since", "1h", "--json", **product)
            assert done.returncode == 0, done.stderr
            found = json.loads(done.stdout)
            assert set(found) == {"since", "channels", "messages", "reads", "stored"}
            assert found["stored"] == stored
        wait_for(lambda: "pending" not in statuses(clean_db), "the sync's row settled")
        assert len(statuses(clean_db)) == 2
        # When the runner stops the process: it ends cleanly
        out = stop(process, timeout=30)
    assert "inbound stopped" in out and "Traceback" not in out, out
    assert API_SECRET not in out


def test_inbound_refuses_to_start_without_streams_secret(cli: Run, product: dict[str, str]) -> None:
    without = {k: v for k, v in product.items() if k != "GETSTREAM_API_SECRET"}
    done = cli("inbound", "--port", str(free_port()), **without)
    assert (done.returncode, done.stderr.strip()) == (2, "error: GETSTREAM_API_SECRET is not set")


def test_the_inbound_process_catches_up_on_its_schedule(
    env: dict[str, str], clean_db: Engine, http: requests.Session, emu: Emulator
) -> None:
    # Given the process catching up from Stream every half second, and one webhook stored
    # (the newest event: where the first catch-up starts, less a minute)
    port = free_port()
    with started_processes(env) as launch:
        process = launch(
            *script("stream-outbox", "inbound", "--port", str(port)),
            OUTBOX_INBOUND_SYNC_EVERY="0.5",
        )
        serving(process, f"http://127.0.0.1:{port}/healthz")
        webhook = f"http://127.0.0.1:{port}/stream/webhook"
        assert post_event(http, webhook, message_event()).status_code == 200
        # When a message is written in Stream and no webhook brings it
        client = StreamChat(API_KEY, API_SECRET, base_url=emu.base_url)
        client.upsert_users([{"id": "ann"}])
        channel = client.channel("messaging", "unsent", {"members": ["ann"]})
        channel.create("ann")
        sent = channel.send_message({"text": "no webhook for me"}, "ann")["message"]["id"]

        # Then the scheduled catch-up stores it, once
        def synced() -> list[str]:
            with clean_db.connect() as conn:
                query = select(inbox.c.message_id).where(inbox.c.webhook_id.like("sync:%"))
                return list(conn.scalars(query))

        wait_for(lambda: synced() == [sent], "the message caught up", process=process)
        stop(process, timeout=30)
    assert synced() == [sent]


def test_a_sigterm_as_the_server_starts_stops_the_process(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Given the process stopped the moment it says it serves (uvicorn not listening yet)
    log = tmp_path / "inbound.log"
    with log.open("w") as output:
        process = start(
            script("stream-outbox", "inbound", "--port", str(free_port())), env=env, output=output
        )
        wait_for_line(log, "Stream's webhooks on", process)
        stop(process, timeout=30)
    # Then it stopped cleanly all the same
    text = log.read_text()
    assert "inbound stopped" in text and "Traceback" not in text, text
