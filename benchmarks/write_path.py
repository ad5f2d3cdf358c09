"""The app's write path: no sync, the capture hooks, and the inline plan (real PostgreSQL).

One transaction as the app runs it when an organizer invites a guest: a new
user, a conversation, two participants and the invitation, then COMMIT. Modes:

* ``baseline`` - no sync at all;
* ``one_more_statement`` - a bare ``SELECT 1`` before COMMIT (the floor of any capture);
* ``hooks`` - the capture hooks write the outbox rows in the transaction;
* ``inline`` - the owners' first plan: inside the transaction, call Stream through
  the SDK (upsert both users, create the channel with its members), as
  ``ORIGINAL-PLAN.md`` does, against the emulator (in its own process).

The script prints the medians, p99s and the ratios hooks/baseline and inline/hooks.

    uv run python -m benchmarks.write_path [--transactions 2000] [--latency-ms 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from stream_chat import StreamChat

from app_hooks import install
from app_hooks.reference import (
    Conversation,
    ConversationParticipant,
    Event,
    EventParticipant,
    User,
)
from benchmarks.common import median, percentile, scratch_database
from benchmarks.services import RemoteEmulator, remote_emulator

Inline = Callable[[uuid.UUID, uuid.UUID, uuid.UUID], None]


def invite(
    session: Session, organizer: uuid.UUID, event: uuid.UUID, inline: Inline | None = None
) -> uuid.UUID:
    """One invitation: a new guest, a conversation with both, the invitation row.

    ``inline`` (the inline plan) is called with the organizer, the guest and the
    invitation's id just before COMMIT. Returns the invitation's id.
    """
    guest = User(email=f"{uuid.uuid4().hex}@example.com")
    conversation = Conversation()
    session.add_all([guest, conversation])
    session.flush()
    invitation = EventParticipant(event_id=event, user_id=guest.id, conversation_id=conversation.id)
    session.add_all(
        [
            ConversationParticipant(conversation_id=conversation.id, user_id=organizer),
            ConversationParticipant(conversation_id=conversation.id, user_id=guest.id),
            invitation,
        ]
    )
    session.flush()
    if inline is not None:
        inline(organizer, guest.id, invitation.id)
    session.commit()
    return invitation.id


def inline_plan(emu: RemoteEmulator) -> Inline:
    """ORIGINAL-PLAN.md's calls inside the transaction: upsert the users, create the channel.

    A ``StreamChat`` client as the plan builds it (the SDK's defaults) on the emulator.
    """
    client = StreamChat(emu.api_key, emu.api_secret, base_url=emu.base_url)

    def call_stream(organizer: uuid.UUID, guest: uuid.UUID, invitation: uuid.UUID) -> None:
        members = [str(organizer), str(guest)]
        client.upsert_users([{"id": member, "name": member[:8]} for member in members])
        channel = client.channel("messaging", f"invitation_{invitation}", {"members": members})
        channel.create(str(organizer))

    return call_stream


def run(url: str, transactions: int, emu: RemoteEmulator) -> dict[str, list[float]]:
    """Time ``transactions`` invitations per mode, alternating modes transaction by transaction.

    Alternating cancels drift (table growth, other load on the machine) between
    the modes. The baseline's sessions come from a factory without capture; the
    only thing it shares with the hooked one is the mapper listeners, which
    return at once for a session without capture (a dictionary lookup).
    """
    engine = create_engine(url)
    factories = {
        "baseline": sessionmaker(engine),
        "one_more_statement": sessionmaker(engine),
        "hooks": sessionmaker(engine),
        "inline": sessionmaker(engine),
    }
    calls: dict[str, Inline | None] = {mode: None for mode in factories}
    calls["inline"] = inline_plan(emu)
    # The floor of any capture that writes in the app's transaction: one extra
    # round trip (a bare SELECT 1) just before COMMIT.
    event.listen(
        factories["one_more_statement"],
        "before_commit",
        lambda session: session.connection().exec_driver_sql("SELECT 1"),
    )
    install(factories["hooks"])
    with Session(engine) as session:
        organizer = User(email=f"org-{uuid.uuid4().hex}@example.com")
        session.add(organizer)
        session.flush()
        bench_event = Event(organizer_id=organizer.id, title="Benchmark")
        session.add(bench_event)
        session.commit()
        organizer_id, event_id = organizer.id, bench_event.id
    samples: dict[str, list[float]] = {mode: [] for mode in factories}
    warm_up = max(10, min(100, transactions // 10))
    for n in range(transactions + warm_up):
        for mode, factory in factories.items():
            with factory() as session:
                start = time.perf_counter()
                invite(session, organizer_id, event_id, calls[mode])
                if n >= warm_up:  # warm-up excluded
                    samples[mode].append(time.perf_counter() - start)
    engine.dispose()
    return samples


def figures(samples: dict[str, list[float]]) -> dict[str, Any]:
    """p50/p99 per mode and the ratios of medians."""
    modes = {
        mode: {"p50_ms": median(s) * 1000, "p99_ms": percentile(s, 99) * 1000, "n": len(s)}
        for mode, s in samples.items()
    }
    base, hooks = modes["baseline"]["p50_ms"], modes["hooks"]["p50_ms"]
    return {
        "modes": modes,
        "ratio_hooks_baseline": hooks / base,
        "ratio_one_more_statement_baseline": modes["one_more_statement"]["p50_ms"] / base,
        "ratio_inline_hooks": modes["inline"]["p50_ms"] / hooks,
    }


def measure(transactions: int, latency_ms: float) -> dict[str, Any]:
    """Run the modes on a scratch database against an emulator with ``latency_ms``."""
    with scratch_database() as url, remote_emulator(latency_ms=latency_ms) as emu:
        result = figures(run(url, transactions, emu))
    result["latency_ms"] = latency_ms
    return result


def print_figures(result: dict[str, Any]) -> None:
    """The table of one run."""
    modes = result["modes"]
    base = modes["baseline"]["p50_ms"]
    print(f"write path, emulator latency {result['latency_ms']:g} ms")
    print(f"{'mode':<20}{'p50 ms':>10}{'p99 ms':>10}{'n':>8}{'p50/baseline':>14}")
    for mode, fig in modes.items():
        print(
            f"{mode:<20}{fig['p50_ms']:>10.3f}{fig['p99_ms']:>10.3f}{fig['n']:>8}"
            f"{fig['p50_ms'] / base:>14.3f}"
        )
    print(
        f"hooks/baseline (p50): {result['ratio_hooks_baseline']:.3f} (target <= 1.15; "
        f"a bare extra statement: {result['ratio_one_more_statement_baseline']:.3f}); "
        f"inline/hooks: {result['ratio_inline_hooks']:.2f} (target >= 3)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the emulator's latency")
    parser.add_argument("--json", dest="json_path", help="also write the figures to this file")
    args = parser.parse_args()
    result = measure(args.transactions, args.latency_ms)
    print_figures(result)
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump({"write_path": result}, fh, indent=2)


if __name__ == "__main__":
    main()
