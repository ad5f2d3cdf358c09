"""The app's write path: no sync, the listeners, the triggers and the inline plan (real PostgreSQL).

One transaction as the app runs it when an organizer invites a guest: a new
user, a conversation, two participants and the invitation, then COMMIT. Capture
triggers act on a whole database, so the run uses two scratch databases, the
second with the triggers installed, and alternates every mode of both, transaction
by transaction, in one loop. On the first database (no triggers):

* ``baseline`` - no sync at all;
* ``one_more_statement`` - a bare ``SELECT 1`` before COMMIT (the floor of any capture);
* ``hooks`` - the session listeners write the outbox rows in the transaction;
* ``inline`` - the owners' first plan: inside the transaction, call Stream through
  the SDK (upsert both users, create the channel with its members), as
  ``ORIGINAL-PLAN.md`` does, against the emulator (in its own process).

On the second (``install_triggers(conn, REFERENCE_BINDING)``):

* ``triggers`` - the capture triggers write the rows, no listeners;
* ``triggers_standby`` - the triggers, and listeners ``install()``ed that stand by
  (their one statement writes nothing where a trigger fired).

Every ratio divides by the first database's ``baseline``: the second cannot run a
transaction without capture while its triggers are installed. That the two
databases cost the same is checked before the triggers go in and after they are
dropped (``control``: a baseline on each, alternating). After each transaction
(outside its timing) the rows it added to ``stream_outbox`` are counted.

The script prints the medians, p99s, the ratios hooks/baseline, triggers/baseline,
triggers/hooks and inline/hooks, and the outbox rows per transaction of each mode.

    uv run python -m benchmarks.write_path [--transactions 2000] [--latency-ms 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from stream_chat import StreamChat

from benchmarks.figures import median, percentile
from stream_outbox.app_hooks import install
from stream_outbox.app_hooks.reference import (
    REFERENCE_BINDING,
    Conversation,
    ConversationParticipant,
    EventParticipant,
    User,
)
from stream_outbox.app_hooks.triggers import drop_triggers, install_triggers
from tests.support.database import outbox_database
from tests.support.emulator import RemoteEmulator, remote_emulator
from tests.support.story import organizer_and_event

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


class _Rows:
    """Counts the rows a transaction added to ``stream_outbox`` (a connection of its own)."""

    def __init__(self, engine: Engine) -> None:
        self.conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self.last = self.conn.exec_driver_sql(
            "SELECT coalesce(max(id), 0) FROM stream_outbox"
        ).scalar_one()

    def added(self) -> int:
        count, last = self.conn.exec_driver_sql(
            "SELECT count(*), coalesce(max(id), %s) FROM stream_outbox WHERE id > %s",
            (self.last, self.last),
        ).one()
        self.last = last
        return int(count)

    def close(self) -> None:
        self.conn.close()


@dataclass
class _Mode:
    factory: sessionmaker[Session]
    organizer: uuid.UUID
    event: uuid.UUID
    rows: _Rows
    call: Inline | None = None


def _control(modes: dict[str, _Mode], iterations: int) -> dict[str, Any]:
    """A baseline on each database, alternating: whether the two cost the same."""
    samples: dict[str, list[float]] = {name: [] for name in modes}
    for n in range(iterations + 10):
        for name, mode in modes.items():
            with mode.factory() as session:
                start = time.perf_counter()
                invite(session, mode.organizer, mode.event)
                if n >= 10:
                    samples[name].append(time.perf_counter() - start)
    p50 = {name: median(s) * 1000 for name, s in samples.items()}
    first, second = p50.values()
    return {"p50_ms": p50, "ratio": second / first, "n": iterations}


def run(
    url: str, triggers_url: str, transactions: int, emu: RemoteEmulator
) -> tuple[dict[str, list[float]], dict[str, float], dict[str, Any]]:
    """Time ``transactions`` invitations per mode, alternating modes transaction by transaction.

    Alternating cancels drift (table growth, other load on the machine) between
    the modes. The baseline's sessions come from a factory without capture; the
    only thing it shares with the hooked one is the mapper listeners, which
    return at once for a session without capture (a dictionary lookup).
    Returns the samples, the outbox rows per transaction of each mode and the
    control runs (the two databases' baselines, before and after the triggers).
    """
    engine, engine_t = create_engine(url), create_engine(triggers_url)
    rows, rows_t = _Rows(engine), _Rows(engine_t)
    ids, ids_t = (
        organizer_and_event(partial(Session, bound), "Benchmark") for bound in (engine, engine_t)
    )
    control_modes = {
        "first_db": _Mode(sessionmaker(engine), *ids, rows),
        "triggers_db": _Mode(sessionmaker(engine_t), *ids_t, rows_t),
    }
    control_iterations = max(50, transactions // 4)
    control = {"before": _control(control_modes, control_iterations)}
    with engine_t.begin() as conn:
        install_triggers(conn, REFERENCE_BINDING)
    modes = {
        name: _Mode(sessionmaker(engine), *ids, rows)
        for name in ("baseline", "one_more_statement", "hooks", "inline")
    }
    modes |= {
        name: _Mode(sessionmaker(engine_t), *ids_t, rows_t)
        for name in ("triggers", "triggers_standby")
    }
    modes["inline"].call = inline_plan(emu)
    # The floor of any capture that writes in the app's transaction: one extra
    # round trip (a bare SELECT 1) just before COMMIT.
    event.listen(
        modes["one_more_statement"].factory,
        "before_commit",
        lambda session: session.connection().exec_driver_sql("SELECT 1"),
    )
    install(modes["hooks"].factory)
    install(modes["triggers_standby"].factory)  # stands by: the triggers write
    rows.added()  # the set-up's and the control's rows are not counted
    rows_t.added()
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    written = dict.fromkeys(modes, 0)
    warm_up = max(10, min(100, transactions // 10))
    for n in range(transactions + warm_up):
        for name, mode in modes.items():
            with mode.factory() as session:
                start = time.perf_counter()
                invite(session, mode.organizer, mode.event, mode.call)
                elapsed = time.perf_counter() - start
            added = mode.rows.added()  # outside the timing
            if n >= warm_up:  # warm-up excluded
                samples[name].append(elapsed)
                written[name] += added
    with engine_t.begin() as conn:
        drop_triggers(conn)
    control["after"] = _control(control_modes, control_iterations)
    rows.close()
    rows_t.close()
    engine.dispose()
    engine_t.dispose()
    per_tx = {name: written[name] / len(samples[name]) for name in modes}
    return samples, per_tx, control


def figures(
    samples: dict[str, list[float]],
    rows_per_tx: dict[str, float] | None = None,
    control: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """p50/p99 per mode, the ratios of medians (to the first database's baseline), rows/tx."""
    modes: dict[str, dict[str, Any]] = {
        mode: {"p50_ms": median(s) * 1000, "p99_ms": percentile(s, 99) * 1000, "n": len(s)}
        for mode, s in samples.items()
    }
    for mode, per_tx in (rows_per_tx or {}).items():
        modes[mode]["rows_per_tx"] = per_tx
    base, hooks = modes["baseline"]["p50_ms"], modes["hooks"]["p50_ms"]
    result: dict[str, Any] = {
        "modes": modes,
        "ratio_hooks_baseline": hooks / base,
        "ratio_one_more_statement_baseline": modes["one_more_statement"]["p50_ms"] / base,
        "ratio_inline_hooks": modes["inline"]["p50_ms"] / hooks,
    }
    if "triggers" in modes:
        triggers = modes["triggers"]["p50_ms"]
        result["ratio_triggers_baseline"] = triggers / base
        result["ratio_triggers_hooks"] = triggers / hooks
        result["ratio_triggers_standby_baseline"] = modes["triggers_standby"]["p50_ms"] / base
    if control is not None:
        result["control"] = control
    return result


def measure(transactions: int, latency_ms: float) -> dict[str, Any]:
    """Run the modes on two scratch databases against an emulator with ``latency_ms``."""
    with (
        outbox_database("stream_outbox_bench") as url,
        outbox_database("stream_outbox_bench_triggers") as triggers_url,
        remote_emulator(latency_ms=latency_ms) as emu,
    ):
        result = figures(*run(url, triggers_url, transactions, emu))
    result["latency_ms"] = latency_ms
    return result


def print_figures(result: dict[str, Any]) -> None:
    """The table of one run."""
    modes = result["modes"]
    base = modes["baseline"]["p50_ms"]
    print(f"write path, emulator latency {result['latency_ms']:g} ms")
    print(f"{'mode':<20}{'p50 ms':>10}{'p99 ms':>10}{'n':>8}{'p50/baseline':>14}{'rows/tx':>10}")
    for mode, fig in modes.items():
        per_tx = fig.get("rows_per_tx")
        print(
            f"{mode:<20}{fig['p50_ms']:>10.3f}{fig['p99_ms']:>10.3f}{fig['n']:>8}"
            f"{fig['p50_ms'] / base:>14.3f}{'' if per_tx is None else f'{per_tx:.3f}':>10}"
        )
    print(
        f"hooks/baseline (p50): {result['ratio_hooks_baseline']:.3f} (target <= 1.15; "
        f"a bare extra statement: {result['ratio_one_more_statement_baseline']:.3f}); "
        f"inline/hooks: {result['ratio_inline_hooks']:.2f} (target >= 3)"
    )
    if "ratio_triggers_baseline" in result:
        print(
            f"triggers/baseline (p50): {result['ratio_triggers_baseline']:.3f}; "
            f"triggers/hooks: {result['ratio_triggers_hooks']:.3f} (target <= 1); "
            f"triggers+standby listeners/baseline: "
            f"{result['ratio_triggers_standby_baseline']:.3f}"
        )
    for when, c in result.get("control", {}).items():
        first, second = c["p50_ms"].values()
        print(
            f"control {when} the triggers, a baseline on each database (n={c['n']}): "
            f"p50 {first:.3f} / {second:.3f} ms, second/first {c['ratio']:.3f}"
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
