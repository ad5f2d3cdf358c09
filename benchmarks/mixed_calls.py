"""Stream calls per outbox row for a mixed workload, once everything is synced.

The reference app writes through its ORM session with the hooks installed: users with
profiles, conversations of three, a few messages each; the real relay and one
``stream-outbox worker`` sync it all (not counted). Then, in one go, the app renames
users, members join and leave conversations, conversations are deleted, messages are
sent and edited; the outbox drains again, and the emulator's counts of that drain are
set beside the rows each kind of change wrote, and beside the fewest calls Stream
could take for the mix (``fewest_calls``).

    uv run python -m benchmarks.mixed_calls [--users 600] [--conversations 200]
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

import stream_outbox.app_hooks
from benchmarks.drain import _settle
from benchmarks.pipeline import Processes
from stream_outbox.app_hooks.outbox import outbox
from stream_outbox.app_hooks.reference import (
    Conversation,
    ConversationParticipant,
    Message,
    Profile,
    User,
)
from tests.support.database import outbox_database
from tests.support.emulator import remote_emulator


def seed(sessions: sessionmaker[Session], rng: random.Random, users: int, convs: int) -> Any:
    """Users with profiles, conversations of three with five messages each."""
    with sessions() as session, session.begin():
        people = [
            User(email=f"u{n}@example.com", profile=Profile(full_name=f"User {n}"))
            for n in range(users)
        ]
        session.add_all(people)
        session.flush()
        conversations = [Conversation() for _ in range(convs)]
        session.add_all(conversations)
        session.flush()
        for conversation in conversations:
            members = rng.sample(people, 3)
            for member in members:
                session.add(
                    ConversationParticipant(conversation_id=conversation.id, user_id=member.id)
                )
            for k in range(5):
                session.add(
                    Message(
                        conversation_id=conversation.id,
                        sender_id=members[k % 3].id,
                        content=f"m{k}",
                    )
                )
        return [p.id for p in people], [c.id for c in conversations]


def workload(
    sessions: sessionmaker[Session], rng: random.Random, people: list[Any], convs: list[Any]
) -> Counter[str]:
    """The mixed changes, each in a transaction of its own (as requests make them)."""
    done: Counter[str] = Counter()
    live = list(convs)
    for user_id in rng.sample(people, len(people) // 3):
        with sessions() as session, session.begin():
            session.get_one(Profile, user_id).full_name = f"Renamed {user_id.hex[:6]}"
        done["user renamed"] += 1
    for conversation_id in rng.sample(live, len(live) // 2):
        with sessions() as session, session.begin():
            members = session.scalars(
                select(ConversationParticipant).where(
                    ConversationParticipant.conversation_id == conversation_id
                )
            ).all()
            session.delete(members[0])  # one leaves
            joined = {m.user_id for m in members}
            newcomer = rng.choice([p for p in people if p not in joined])
            session.add(ConversationParticipant(conversation_id=conversation_id, user_id=newcomer))
        done["member left + member joined"] += 1
    for conversation_id in rng.sample(live, len(live) // 10):
        with sessions() as session, session.begin():
            session.delete(session.get_one(Conversation, conversation_id))
        live.remove(conversation_id)
        done["conversation deleted"] += 1
    for _ in range(len(live) * 2):
        conversation_id = rng.choice(live)
        with sessions() as session, session.begin():
            sender = session.scalars(
                select(ConversationParticipant.user_id).where(
                    ConversationParticipant.conversation_id == conversation_id
                )
            ).first()
            session.add(Message(conversation_id=conversation_id, sender_id=sender, content="new"))
        done["message sent"] += 1
    with sessions() as session:
        edited = session.scalars(
            select(Message.id).join(Conversation).order_by(Message.id).limit(len(live) // 2)
        ).all()
    for message_id in edited:
        with sessions() as session, session.begin():
            session.get_one(Message, message_id).content = "edited"
        done["message edited"] += 1
    return done


def fewest_calls(changes: Mapping[str, int]) -> int:
    """The fewest Stream calls that can make the mix: renames and deletions 100 to a call
    (UpdateUsers, DeleteChannels), a leave with a join one UpdateChannel, a message sent or
    edited one call each."""
    per_hundred = ("user renamed", "conversation deleted")
    return sum(
        math.ceil(count / 100) if kind in per_hundred else count for kind, count in changes.items()
    )


def measure(users: int, conversations: int) -> dict[str, Any]:
    """Seed and sync, then the mixed workload's rows and Stream calls."""
    rng = random.Random(23)
    with outbox_database("stream_outbox_mixed") as url, remote_emulator() as emu:
        engine = create_engine(url)
        sessions = sessionmaker(engine, expire_on_commit=False)
        stream_outbox.app_hooks.install(sessions)
        try:
            with Processes(url, emu, "mixed") as procs:
                procs.worker(0)
                procs.relay()
                people, convs = seed(sessions, rng, users, conversations)
                _settle(url, timeout=600)
                emu.reset_request_counts()
                with engine.connect() as conn:
                    mark = int(conn.scalar(select(func.max(outbox.c.id))) or 0)
                changes = workload(sessions, rng, people, convs)
                settled = _settle(url, timeout=600)
            with engine.connect() as conn:
                rows: dict[str, int] = dict(
                    conn.execute(
                        select(outbox.c.target_kind, func.count())
                        .where(outbox.c.id > mark)
                        .group_by(outbox.c.target_kind)
                    ).all()
                )
        finally:
            engine.dispose()
        counts = emu.request_counts()
    total_rows = sum(rows.values())
    fewest = fewest_calls(changes)
    return {
        "changes": dict(changes),
        "rows": rows,
        "by_status": settled["by_status"],
        "calls": int(counts["total"]),
        "calls_by_endpoint": counts["counts"],
        "calls_per_row": int(counts["total"]) / max(1, total_rows),
        "fewest_calls": fewest,
        "calls_over_fewest": int(counts["total"]) / max(1, fewest),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    results = measure(args.users, args.conversations)
    print(json.dumps({k: v for k, v in results.items()}, indent=2))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
