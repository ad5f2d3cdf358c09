"""The app's write path with and without the capture hooks (real PostgreSQL).

One transaction as the app runs it when an organizer invites a guest: a
conversation, two participants and the invitation, then COMMIT. The script
prints the medians, p99s and the ratio hooks/baseline.

    uv run python -m benchmarks.write_path [--transactions 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from app_hooks import install
from app_hooks.reference import (
    Conversation,
    ConversationParticipant,
    Event,
    EventParticipant,
    User,
)
from benchmarks.common import median, percentile, scratch_database


def invite(session: Session, organizer: uuid.UUID, event: uuid.UUID) -> None:
    """One invitation: a new guest, a conversation with both, the invitation row."""
    guest = User(email=f"{uuid.uuid4().hex}@example.com")
    conversation = Conversation()
    session.add_all([guest, conversation])
    session.flush()
    session.add_all(
        [
            ConversationParticipant(conversation_id=conversation.id, user_id=organizer),
            ConversationParticipant(conversation_id=conversation.id, user_id=guest.id),
            EventParticipant(event_id=event, user_id=guest.id, conversation_id=conversation.id),
        ]
    )
    session.commit()


def run(url: str, transactions: int) -> dict[str, list[float]]:
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
    }
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
    for n in range(transactions + 100):
        for mode, factory in factories.items():
            with factory() as session:
                start = time.perf_counter()
                invite(session, organizer_id, event_id)
                if n >= 100:  # warm-up excluded
                    samples[mode].append(time.perf_counter() - start)
    engine.dispose()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument("--json", dest="json_path", help="also write the figures to this file")
    args = parser.parse_args()
    with scratch_database() as url:
        samples = run(url, args.transactions)
    figures = {
        mode: {"p50_ms": median(s) * 1000, "p99_ms": percentile(s, 99) * 1000, "n": len(s)}
        for mode, s in samples.items()
    }
    base = figures["baseline"]["p50_ms"]
    ratio = figures["hooks"]["p50_ms"] / base
    floor = figures["one_more_statement"]["p50_ms"] / base
    print(f"{'mode':<20}{'p50 ms':>10}{'p99 ms':>10}{'n':>8}{'p50/baseline':>14}")
    for mode, fig in figures.items():
        print(
            f"{mode:<20}{fig['p50_ms']:>10.3f}{fig['p99_ms']:>10.3f}{fig['n']:>8}"
            f"{fig['p50_ms'] / base:>14.3f}"
        )
    print(
        f"ratio hooks/baseline (p50): {ratio:.3f} (target <= 1.15; "
        f"a bare extra statement: {floor:.3f})"
    )
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump({"write_path": figures, "ratio_p50": ratio, "floor_p50": floor}, fh, indent=2)


if __name__ == "__main__":
    main()
