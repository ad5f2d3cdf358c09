"""Conversations: make each conversation's channel hold what the database says.

Each reconcile reads the conversation's desired channel, compares it with Stream
and sends only what differs: create the channel, set its data, add and remove
members, delete it when the conversation is gone. Safe to run any number of times.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import DesiredChannel
from stream_outbox.app_hooks.changes import READS_KEY, READS_ONLY
from stream_outbox.worker.errors import (
    PermanentError,
    PermanentStreamError,
    RetryableError,
    TransientStreamError,
)
from stream_outbox.worker.runtime import Runtime
from stream_outbox.worker.store.cutover import current_cutover, wait_for_import
from stream_outbox.worker.store.held_channels import HeldChannel
from stream_outbox.worker.store.locks import TargetBusy
from stream_outbox.worker.store.repository import ChannelRef
from stream_outbox.worker.stream.answers import is_deleted_user, is_not_found, names_missing_users
from stream_outbox.worker.sync.bodies import SYSTEM_USER, SYSTEM_USER_ID
from stream_outbox.worker.sync.history import copy_history
from stream_outbox.worker.sync.plan import (
    OWNED_CHANNEL_FIELDS,
    SEE_STREAM_KEY,
    channel_candidates,
    plan_channel,
)
from stream_outbox.worker.sync.read_state import NoMemberInStream, mark_reads
from stream_outbox.worker.sync.result import Result
from stream_outbox.worker.sync.users import ensure_users, is_valid_user, require_valid_user

__all__ = [
    "channel_of",
    "reconcile_conversation",
    "reconcile_conversations",
    "waits_for_import",
]


@dataclass(frozen=True)
class _Snapshot:
    """A conversation as read from the database: its open rows, desired channel, map entry."""

    settles: list[int]
    channel: DesiredChannel | None
    known: ChannelRef | None


def reconcile_conversations(rt: Runtime, targets: dict[str, dict[str, Any]]) -> Result:
    """Reconcile a batch of conversations (``targets``: each with its payload).

    One database read serves the whole batch, and members not known to exist in
    Stream are upserted together; then each channel is brought in step on its own,
    but for the channels of deleted conversations: each is marked deleted in turn, and
    Stream deletes them together at the end (:func:`_delete_together`).
    A permanent error fails its conversation only; a transient one stops the batch
    (``Result.error``, the rest ``unreached``) so the job retries what is left.
    """
    # The locks' lease is not renewed: a batch slowed down by Stream stops in time and
    # retries the rest, rather than outlive the locks of the conversations it holds; a
    # batch in a worker that is shutting down stops too, so the shutdown stays short.
    deadline = time.monotonic() + rt.settings.lock_lease.total_seconds() / 2
    marks_only = _marks_only(rt, targets)
    full = {cid: payload for cid, payload in targets.items() if cid not in marks_only}
    snapshots = _assign_channels(rt, _read_conversations(rt, full))
    ready = _ensure_members(rt, [s.channel for s in snapshots.values() if s.channel is not None])
    order = list(full)
    created: list[str] = []  # channels Stream holds now, marked so together below
    deletions: list[tuple[str, ChannelRef]] = []  # marked deleted, deleted together below

    def converge(n: int, cid: str) -> tuple[str, bool]:
        if n and (time.monotonic() > deadline or rt.stopping.is_set()):
            why = (
                "worker stopping" if rt.stopping.is_set() else "batch ran past half the lock lease"
            )
            raise _Stop(f"{why}: the rest goes to a new job")
        return _converge(
            rt,
            cid,
            snapshots[cid],
            targets[cid],
            ready=ready,
            deadline=deadline,
            created=created,
            deletions=deletions,
        )

    slow = rt.gateway.call_latency() > SLOW_CALL
    pool = rt.fanout if slow and len(order) > 1 else None
    steps = _in_turn(order, converge) if pool is None else _at_once(pool, order, converge)
    steps = _delete_together(rt, deletions, steps)
    # One statement for the batch (a commit a channel costs more than the calls): a crash
    # before it leaves a channel unmarked, which its next reconcile marks
    rt.repo.channels.mark_in_stream_many(created)
    steps = _with_reads(rt, targets, dict(steps))
    order = list(targets)
    result = Result("")
    outcomes: list[str] = []
    for cid, step in steps:
        if isinstance(step, PermanentError):  # Stream refused it, or its data cannot go
            result.failed[cid] = step.describe()
        elif isinstance(step, Exception):  # transient: the job retries the targets not done
            result.error = result.error or (
                TransientStreamError(str(step)) if isinstance(step, _Stop) else step
            )
            result.unreached.append(cid)
        else:
            outcome, in_step = step
            if in_step:  # a deletion settles nothing else: a later row may name the channel
                result.settles += snapshots[cid].settles
            outcomes.append(outcome)
    result.summary = outcomes[0] if len(order) == 1 and outcomes else _summary(outcomes, result)
    return result


# Above this average time of a Stream call, a job's conversations go to Stream at once
# (up to OUTBOX_STREAM_CONCURRENCY calls in a process); below, one after the other costs
# less than handing them to other threads.
SLOW_CALL = 0.010

_Step = tuple[str, bool] | Exception


class _Stop(RetryableError):
    """A batch stops before this conversation (its lease half gone, or the worker stopping)."""


def _in_turn(
    order: list[str], converge: Callable[[int, str], tuple[str, bool]]
) -> list[tuple[str, _Step]]:
    """One conversation after the other; a transient error leaves the rest undone."""
    steps: list[tuple[str, _Step]] = []
    for n, cid in enumerate(order):
        try:
            steps.append((cid, converge(n, cid)))
        except PermanentError as exc:
            steps.append((cid, exc))
        except Exception as exc:
            return steps + [(cid, exc)] + [(rest, _Stop("not reached")) for rest in order[n + 1 :]]
    return steps


def _at_once(
    pool: Executor, order: list[str], converge: Callable[[int, str], tuple[str, bool]]
) -> list[tuple[str, _Step]]:
    """Every conversation at once on the pool (each in a copy of this job's context, so
    its Stream calls count as the job's); after a transient error, those not started yet
    are left undone, as in turn."""
    stopped = threading.Event()

    def step(n: int, cid: str) -> _Step:
        if stopped.is_set():
            return _Stop("not reached")
        try:
            return converge(n, cid)
        except PermanentError as exc:
            return exc
        except Exception as exc:
            stopped.set()
            return exc

    futures = [
        pool.submit(contextvars.copy_context().run, step, n, cid) for n, cid in enumerate(order)
    ]
    return [(cid, future.result()) for cid, future in zip(order, futures, strict=True)]


def _delete_together(
    rt: Runtime, deletions: list[tuple[str, ChannelRef]], steps: list[tuple[str, _Step]]
) -> list[tuple[str, _Step]]:
    """Delete the batch's channels of deleted conversations (each marked deleted already)
    in Stream at once: ``DeleteChannels`` calls of 100, not a ``DeleteChannel`` each
    (Stream allows 60 of either a minute). The conversations' steps as they are then: a
    transient failure leaves them all to be retried (deleting again is harmless), a
    channel Stream refuses fails its conversation alone."""
    if not deletions:
        return steps
    channels = {cid: f"{ref.channel_type}:{ref.channel_id}" for cid, ref in deletions}
    failed: dict[str, Exception] = {}
    try:
        refused = rt.gateway.delete_channels(
            list(dict.fromkeys(channels.values())), hard=rt.settings.hard_delete_channels
        )
    except Exception as exc:  # the job retries these conversations
        failed = dict.fromkeys(channels, exc)
    else:
        for cid, channel in channels.items():
            if channel in refused:
                failed[cid] = PermanentError(refused[channel])
    return [(cid, failed.get(cid, step)) for cid, step in steps]


def _marks_only(rt: Runtime, targets: dict[str, dict[str, Any]]) -> set[str]:
    """The conversations whose rows only mark reads (:data:`READS_ONLY`) and whose
    channel Stream holds: their members are left alone (a read costs its mark alone).
    The others are reconciled first (a channel Stream does not hold yet is created)."""
    asked = [cid for cid, payload in targets.items() if payload.get(READS_ONLY)]
    if not asked:
        return set()
    with rt.engine.connect() as conn:
        known = rt.repo.channels.channels_for(asked, conn)
    return {cid for cid, ref in known.items() if ref.in_stream and not ref.deleted}


def _with_reads(
    rt: Runtime, targets: dict[str, dict[str, Any]], steps: dict[str, _Step]
) -> list[tuple[str, _Step]]:
    """Each target's step, in ``targets``' order, with its reads marked (after its
    reconcile, if it had one that went well): the outcomes joined, or the marks' error."""
    done: list[tuple[str, _Step]] = []
    for cid, payload in targets.items():
        step = steps.get(cid)
        readers = payload.get(READS_KEY) or []
        if isinstance(step, Exception) or not (readers or step is None):
            done.append((cid, step if step is not None else _Stop("not reached")))
            continue
        try:
            marked = _marks(rt, cid, payload, reconciled=step is not None)
        except Exception as exc:  # a permanent error fails it alone; a transient one retries
            done.append((cid, exc))
            continue
        done.append((cid, (marked, False) if step is None else (f"{step[0]}; {marked}", step[1])))
    return done


def _marks(rt: Runtime, cid: str, payload: dict[str, Any], *, reconciled: bool) -> str:
    """Mark the reads of the payload's readers; where Stream holds a reader as no member
    (their joining's job not run yet, or removed in Stream) and the conversation was not
    just reconciled, its members are reconciled against Stream itself first, and the
    reads marked again."""
    readers = payload.get(READS_KEY) or []
    try:
        return mark_reads(rt, cid, readers)
    except NoMemberInStream:
        if reconciled:
            raise
    outcome = reconcile_conversation(rt, cid, {**payload, SEE_STREAM_KEY: True})
    return f"{outcome}; {mark_reads(rt, cid, readers)}"


def _summary(outcomes: list[str], result: Result) -> str:
    return (
        f"{len(outcomes)} conversations in step, {len(result.failed)} failed, "
        f"{len(result.unreached)} left"
    )


def reconcile_conversation(
    rt: Runtime, cid: str, payload: dict[str, Any], *, need_channel: bool = False
) -> str:
    """Create, update or delete one conversation's channel to match the database."""
    snapshot = _read_conversations(rt, {cid: payload})[cid]
    return _converge(rt, cid, snapshot, payload, need_channel=need_channel)[0]


def _read_conversations(rt: Runtime, targets: dict[str, dict[str, Any]]) -> dict[str, _Snapshot]:
    """Read the conversations' open rows first, then their desired channels and map entries.

    The open rows committed before the state is read are brought in step with it:
    the job settles them, and their own jobs find nothing left to do.
    """
    legacy = [cid for cid, payload in targets.items() if payload.get("legacy")]
    plain = [cid for cid in targets if cid not in set(legacy)]
    with rt.engine.connect() as conn:
        settles = rt.repo.open_rows_of(conn, "conversation", list(targets))
        desired: dict[str, DesiredChannel] = {}
        for ids, is_legacy in ((plain, False), (legacy, True)):
            if ids:
                desired.update(reads.desired_channels(rt.binding, conn, ids, legacy=is_legacy))
        known = rt.repo.channels.channels_for(list(targets), conn)
    return {
        cid: _Snapshot(settles.get(cid, []), desired.get(cid), known.get(cid)) for cid in targets
    }


def _ensure_members(rt: Runtime, channels: list[DesiredChannel]) -> set[str]:
    """Upsert the members (and creators) of a batch of channels not known to Stream yet.

    Best effort for the batch: ids Stream cannot take are left to their own
    conversation's reconcile, which fails that conversation alone.
    """
    needed: dict[str, None] = {}
    for channel in channels:
        for user_id in (*channel.members, channel.created_by):
            if user_id is not None and is_valid_user(user_id):
                needed[user_id] = None
    if len(channels) < 2 or not needed:
        return set()  # one channel: its own reconcile does this
    # A user Stream refuses, or users whose own job holds them: each conversation then
    # ensures its own members (and fails, or waits, alone).
    with suppress(PermanentStreamError, TargetBusy):
        return ensure_users(rt, list(needed), wait=1.0)
    return set()


def _converge(
    rt: Runtime,
    cid: str,
    snapshot: _Snapshot,
    payload: dict[str, Any],
    *,
    need_channel: bool = False,
    ready: set[str] | frozenset[str] = frozenset(),
    deadline: float | None = None,
    created: list[str] | None = None,
    deletions: list[tuple[str, ChannelRef]] | None = None,
) -> tuple[str, bool]:
    """Bring one conversation's channel in step with its snapshot (a channel Stream holds
    for the first time is marked at once, or added to ``created`` for its batch to mark;
    a channel to delete is deleted at once, or added to ``deletions`` for its batch to
    delete).

    Returns the outcome and whether the channel now matches the snapshot (only
    then are the conversation's other open rows settled with this job's).

    A conversation with no members (and no event) gets no channel until it has some,
    unless ``need_channel`` (a message must go somewhere); once it has a channel, the
    channel follows it, emptied when everyone has left. A history copy stops at
    ``deadline`` (see :func:`copy_history`).
    """
    channel, known = snapshot.channel, snapshot.known
    if channel is not None and waits_for_import(rt, known):
        after = wait_for_import(rt.engine, "conversation", cid, payload)
        return f"waits for the Stream import (looked at again in {after.seconds} s)", False
    if channel is not None and known is not None and known.deleted:
        channel, known = _reopen(rt, cid, known, legacy=bool(payload.get("legacy")))
    if channel is None:
        return _delete_channel(rt, cid, payload, known, deletions), False
    creator = channel.created_by
    if creator is None:
        if known is None and not need_channel:
            # No members yet: assign no id either, so an invitation that comes later still
            # gives the channel its invitation_ id when it is first synced.
            return "waiting for members", False
        # Everyone left (or a message needs the channel): the channel stays, emptied;
        # should it have to be created, the system user creates it.
        rt.gateway.upsert_users([SYSTEM_USER])
        creator = SYSTEM_USER_ID
    ref = known or channel_of(rt, channel)
    # The creator (an event's organizer, a proposer) need not be a member: it must exist too.
    needed = list(channel.members)
    if creator not in needed and creator != SYSTEM_USER_ID:
        needed.append(creator)
    for member in needed:
        require_valid_user(member)
    ensure_users(rt, [user_id for user_id in needed if user_id not in ready])
    copy_now = bool(payload.get("history")) and rt.settings.mirror_messages
    read = bool(payload.get(SEE_STREAM_KEY))
    ref, changed = _in_step(rt, cid, ref, channel, creator, needed, copy_now, read, created)
    changes = f"+{changed[0]} -{changed[1]} members"
    if copy_now:
        changes += f", history +{copy_history(rt, cid, ref, deadline)}"
    return f"{ref.channel_type}:{ref.channel_id} in step ({changes})", True


def _in_step(
    rt: Runtime,
    cid: str,
    ref: ChannelRef,
    channel: DesiredChannel,
    creator: str,
    needed: list[str],
    copy_now: bool,
    read: bool,
    created: list[str] | None,
) -> tuple[ChannelRef, tuple[int, int]]:
    """Bring the channel in step: planned against Stream's last answer where it is kept
    (one call for a change) unless ``read``, else against a read that creates the channel
    if Stream lacks it. Returns the channel and the members added and removed."""
    held = rt.held.get(ref) if ref.in_stream and not read else None
    if held is not None:
        try:
            return ref, _bring_in_step(rt, ref, channel, held)
        except PermanentStreamError as exc:
            if not is_not_found(exc):
                raise
            rt.held.forget(ref)  # Stream holds no such channel (deleted by hand): read it
    owned = {k: v for k, v in channel.data.items() if k in OWNED_CHANNEL_FIELDS}
    remote = _with_users(
        rt,
        needed,
        lambda: rt.gateway.get_or_create_channel(
            ref.channel_type,
            ref.channel_id,
            created_by=creator,
            members=channel.members,
            data=owned,
        ),
    )
    rt.held.put(ref, remote.members, remote.data, OWNED_CHANNEL_FIELDS)
    if not ref.in_stream:
        ref = _first_in_stream(rt, cid, ref, copy_now, created)
    return ref, _bring_in_step(rt, ref, channel, HeldChannel(remote.members, remote.data))


def _bring_in_step(
    rt: Runtime, ref: ChannelRef, channel: DesiredChannel, held: HeldChannel
) -> tuple[int, int]:
    """Send what differs between the desired channel and what Stream ``held``: its data,
    then its members added and removed in one UpdateChannel. Stream's answers are kept
    (:mod:`~stream_outbox.worker.store.held_channels`), and checked: members someone else
    changed meanwhile are corrected by one more call. Returns the members added and
    removed."""
    members, data = held.members, held.data
    added = removed = 0
    for _ in range(2):
        plan = plan_channel(channel, members, data)
        if plan.empty:
            break
        rt.held.forget(ref)  # a crash before the answer is kept leaves nothing stale
        data_now: dict[str, Any] | None = data
        if plan.set_data or plan.unset_data:
            data_now = rt.gateway.update_channel_data(
                ref.channel_type, ref.channel_id, plan.set_data, plan.unset_data
            )
        members_now: frozenset[str] | None = members
        if plan.add or plan.remove:
            update = partial(
                rt.gateway.update_members, ref.channel_type, ref.channel_id, plan.add, plan.remove
            )
            members_now = _with_users(rt, plan.add, update)
        added, removed = added + len(plan.add), removed + len(plan.remove)
        if members_now is None or data_now is None:
            break  # Stream's answer did not say: nothing kept, the next change reads it
        members, data = members_now, data_now
        rt.held.put(ref, members, data, OWNED_CHANNEL_FIELDS)
    return added, removed


def channel_of(rt: Runtime, channel: DesiredChannel) -> ChannelRef:
    """Assign the conversation a channel by the naming rules (its map entry if it has one)."""
    try:
        return rt.repo.channels.assign_channel(channel.conversation_id, channel_candidates(channel))
    except LookupError as exc:
        raise PermanentStreamError(str(exc), endpoint="channel-id") from None


def _assign_channels(rt: Runtime, snapshots: dict[str, _Snapshot]) -> dict[str, _Snapshot]:
    """Assign the batch's new channels their ids in one statement (a commit each is slow).

    Only channels about to be created (they have a creator); any this leaves without
    an id try again on their own, and fail alone.
    """
    wanted: dict[str, list[ChannelRef]] = {}
    for cid, snapshot in snapshots.items():
        channel = snapshot.channel
        if channel is not None and snapshot.known is None and channel.created_by is not None:
            with suppress(PermanentStreamError):  # an id Stream cannot take: fails alone
                wanted[cid] = channel_candidates(channel)
    if len(wanted) < 2:
        return snapshots
    assigned = rt.repo.channels.assign_channels(wanted)
    return {
        cid: replace(snapshot, known=assigned.get(cid, snapshot.known))
        for cid, snapshot in snapshots.items()
    }


def _delete_channel(
    rt: Runtime,
    cid: str,
    payload: dict[str, Any],
    known: ChannelRef | None,
    deletions: list[tuple[str, ChannelRef]] | None = None,
) -> str:
    """Delete the channel of a conversation the database no longer holds (or, given
    ``deletions``, add it there for its batch to delete, once marked).

    With no map entry, nothing was ever created for the conversation (creation follows
    the assignment, and this job holds the conversation's lock), so an id the naming
    rules merely predicted is left alone: it may be another conversation's. ``known`` is
    the map entry read under that lock.
    """
    ref = known
    if ref is None and payload.get("channel_id") and not payload.get("predicted"):
        ref = ChannelRef(
            str(payload.get("channel_type") or "messaging"), str(payload["channel_id"])
        )
    if ref is None:
        return "conversation gone, never synced"
    owner = rt.repo.channels.conversation_of_channel(ref)
    if owner not in (None, cid):
        # The id the naming rules predicted went to another conversation (a second
        # conversation of the same two people): that channel is not this one's to delete.
        return f"conversation gone, never synced ({ref.channel_id} is {owner}'s)"
    if owner == cid:  # marked first: a return after any crash makes a new generation
        rt.repo.channels.mark_channel_deleted(cid, ref)
    rt.held.forget(ref)
    if deletions is not None:
        deletions.append((cid, ref))  # list.append is atomic: the batch's threads share it
    else:
        rt.gateway.delete_channel(
            ref.channel_type, ref.channel_id, hard=rt.settings.hard_delete_channels
        )
    return f"{ref.channel_type}:{ref.channel_id} deleted"


def _reopen(
    rt: Runtime, cid: str, known: ChannelRef, *, legacy: bool
) -> tuple[DesiredChannel | None, ChannelRef]:
    """A conversation back in the database after its channel was deleted (a soft delete
    undone): the channel's next generation, its messages copied again by a history row.
    Returns the conversation as read now (None: gone again) and its channel.

    The database is read again first: a batch's snapshot may be older than this turn,
    and a conversation gone again since keeps its deleted channel (its deletion's row
    follows), while one still back is created with its members and data as they are
    now. Then the channel is deleted (nothing if Stream holds none): the mark precedes
    the delete call, which a crash may have left unmade, and Stream must show the
    channel created again empty, as it does after a deletion.
    """
    with rt.engine.connect() as conn:
        channel = reads.desired_channels(rt.binding, conn, [cid], legacy=legacy).get(cid)
    if channel is None:
        return None, known
    rt.held.forget(known)
    rt.gateway.delete_channel(
        known.channel_type, known.channel_id, hard=rt.settings.hard_delete_channels
    )
    return channel, rt.repo.channels.reopen_channel(cid, copy=rt.settings.mirror_messages) or known


def _first_in_stream(
    rt: Runtime, cid: str, ref: ChannelRef, copy_now: bool, created: list[str] | None
) -> ChannelRef:
    """Record that Stream holds the channel now (in ``created``, when given, for the
    batch to mark). One created after a history export that did not carry it (the
    conversation was deleted then, or had no members) gets its messages up to the
    watermark by a history copy, as no import brings them: marked now, in one
    transaction with the copy (a crash between would leave the history out)."""
    left_out = _history_left_out(rt, cid, ref)
    if left_out or created is None:
        write_row = left_out and not copy_now
        rt.repo.channels.mark_in_stream(cid, copy_history=left_out, write_row=write_row)
    else:
        created.append(cid)  # list.append is atomic: the batch's threads share it
    return replace(ref, in_stream=True, copying=ref.copying or left_out)


def _history_left_out(rt: Runtime, cid: str, ref: ChannelRef) -> bool:
    """Whether the conversation has messages at or before the latest export's watermark
    that the export did not carry (and the live mirror does not send)."""
    cutover = current_cutover(rt.engine)
    if cutover is None or cutover.since is None or not rt.settings.mirror_messages:
        return False
    if ref.generation or cutover.imports_messages_of(ref):
        return False  # a later generation is copied whole; the import brings the rest
    with rt.engine.connect() as conn:
        oldest = reads.messages_after(rt.binding, conn, cid, None, 1)
    return bool(oldest) and cutover.covers(oldest[0].created_at)


def waits_for_import(rt: Runtime, known: ChannelRef | None) -> bool:
    """Whether the conversation of channel ``known`` (None: none assigned) waits for a
    pending import (:meth:`Cutover.brings`). Read afresh before it says yes: a job that
    waits after the import's completion was recorded would wait for nothing."""
    cutover = current_cutover(rt.engine)
    if cutover is None or not cutover.brings(known):
        return False
    cutover = current_cutover(rt.engine, fresh=True)
    return cutover is not None and cutover.brings(known)


def _with_users(rt: Runtime, user_ids: Sequence[str], call: Any) -> Any:
    """Run a call that needs these users in Stream; if Stream says some are missing or
    deleted, upsert them all (which restores a deleted one the database holds) and try
    once more.

    The known-users cache saves an upsert per reconcile; it can be stale (a user
    deleted in Stream by hand, a Redis restart, a user job restoring one at this very
    moment), and this is where it heals. A user the database no longer holds left
    since the conversation was read (and was retired in Stream meanwhile): the
    conversation is read again (:class:`_MembersLeft`, a retry), not failed.
    """
    try:
        return call()
    except PermanentStreamError as exc:
        if not (names_missing_users(exc) or is_deleted_user(exc)):
            raise
        present = ensure_users(rt, user_ids, force=True)
        left = [user_id for user_id in user_ids if user_id not in present]
        if left:
            raise _MembersLeft(
                f"{len(left)} member(s) left the database while the channel was being "
                f"reconciled ({', '.join(left[:3])}): reading the conversation again"
            ) from None
        return call()


class _MembersLeft(RetryableError):
    """Users a conversation's snapshot names are no longer in the database."""
