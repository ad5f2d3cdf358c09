"""Reconciles: make Stream hold what the database says for one target (the I/O half).

Each reads the target's current desired state from the database, compares it
with Stream, and sends only what differs. Safe to run any number of times.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Any

from app_hooks.binding import DesiredChannel, stream_message_id
from app_hooks.channel_ids import (
    InvalidStreamId,
    choose_channel_id,
    fallback_channel_id,
    validate_user_id,
)
from worker.errors import PermanentStreamError, TransientStreamError
from worker.history import SYSTEM_USER, author_of, import_history, message_body
from worker.locks import TargetBusy
from worker.plan import OWNED_CHANNEL_FIELDS, plan_channel
from worker.repository import ChannelRef
from worker.runtime import Runtime

__all__ = ["SYSTEM_USER", "Result", "reconcile"]


def _known_users(rt: Runtime) -> str:
    return f"{rt.settings.redis_prefix}:known_users"


@dataclass
class Result:
    """What a reconcile did: a word for the log, and targets that failed on their own."""

    outcome: str
    failed: dict[str, str] = field(default_factory=dict)
    # Other open rows of the targets that this reconcile brought in step (see settles)
    settles: list[int] = field(default_factory=list)
    # Targets not reached: ``error`` (transient) stopped the batch before them
    unreached: list[str] = field(default_factory=list)
    error: Exception | None = None


def reconcile(rt: Runtime, kind: str, targets: dict[str, dict[str, Any]]) -> Result:
    """Reconcile targets of one kind (users or conversations in batches, one message)."""
    if kind == "user":
        return reconcile_users(rt, list(targets))
    if kind == "conversation":
        return reconcile_conversations(rt, targets)
    if kind == "message":
        message_id, payload = next(iter(targets.items()))
        return mirror_message(rt, message_id, payload)
    raise PermanentStreamError(f"unknown target kind {kind!r}")


# -- users -------------------------------------------------------------------------------


def reconcile_users(rt: Runtime, ids: Sequence[str]) -> Result:
    """Upsert users that exist; apply the deleted-user policy to those that do not."""
    failed: dict[str, str] = {}
    with rt.engine.connect() as conn:
        desired = rt.binding.desired_users(conn, ids)
    users = []
    for user_id, user in desired.items():
        try:
            validate_user_id(user_id)
        except InvalidStreamId as exc:
            failed[user_id] = str(exc)
            continue
        users.append(user.as_stream())
    refused = _upsert_isolating(rt, users)
    gone = [user_id for user_id in ids if user_id not in desired]
    kept = _retire_users(rt, gone)
    failed.update(refused)
    failed.update(kept)
    outcome = f"upserted {len(users) - len(refused)}, retired {len(gone) - len(kept)}"
    return Result(outcome, failed)


def _upsert_isolating(rt: Runtime, users: list[dict[str, Any]]) -> dict[str, str]:
    """Upsert in batches; a batch Stream rejects is retried user by user to isolate the culprit."""
    if not users:
        return {}
    try:
        rt.gateway.upsert_users(users)
    except PermanentStreamError as exc:
        if len(users) == 1:
            return {users[0]["id"]: exc.describe()}
        failed: dict[str, str] = {}
        for user in users:
            failed.update(_upsert_isolating(rt, [user]))
        ok = [user["id"] for user in users if user["id"] not in failed]
        _remember_users(rt, ok)
        return failed
    _remember_users(rt, [user["id"] for user in users])
    return {}


def _retire_users(rt: Runtime, user_ids: list[str]) -> dict[str, str]:
    """Apply the deleted-user policy; returns the users Stream refused, each with its error."""
    failed: dict[str, str] = {}
    policy = rt.settings.deleted_user_policy
    for user_id in user_ids:
        try:
            validate_user_id(user_id)  # an id Stream cannot name: it never held that user
            if policy == "deactivate":
                rt.gateway.deactivate_users([user_id])
            elif policy == "delete":
                rt.gateway.delete_users([user_id])
        except InvalidStreamId as exc:
            failed[user_id] = str(exc)
        except PermanentStreamError as exc:
            failed[user_id] = exc.describe()
    if user_ids:
        rt.redis.srem(_known_users(rt), *user_ids)
    return failed


def _unknown(rt: Runtime, user_ids: Sequence[str]) -> list[str]:
    """Those of ``user_ids`` not known to be in Stream."""
    known = rt.redis.smismember(_known_users(rt), list(user_ids))
    return [uid for uid, is_known in zip(user_ids, known, strict=True) if not is_known]


def _remember_users(rt: Runtime, user_ids: list[str]) -> None:
    if user_ids:
        rt.redis.sadd(_known_users(rt), *user_ids)


def ensure_users(
    rt: Runtime, user_ids: Sequence[str], *, force: bool = False, wait: float = 10.0
) -> set[str]:
    """Make sure these users exist in Stream: upsert those not known to be there.

    Under the users' locks, like a user job: otherwise a user job could rename one of
    them between this read and this upsert, and the older name would land last.
    Returns the ids now known to be in Stream (not those the database lacks).
    """
    if not user_ids:
        return set()
    missing = list(user_ids) if force else _unknown(rt, user_ids)
    if not missing:
        return set(user_ids)
    with rt.locks.hold("user", missing, wait=wait):
        if not force:  # the users' own job may have upserted them while we waited
            missing = _unknown(rt, missing)
            if not missing:
                return set(user_ids)
        with rt.engine.connect() as conn:
            desired = rt.binding.desired_users(conn, missing)
        users = [desired[uid].as_stream() for uid in missing if uid in desired]
        rt.gateway.upsert_users(users)
        _remember_users(rt, [user["id"] for user in users])
    lacking = set(missing) - set(desired)  # not in the database: not in Stream either
    return {uid for uid in user_ids if uid not in lacking}


# -- conversations -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Snapshot:
    """A conversation as read from the database: its open rows, desired channel, map entry."""

    settles: list[int]
    channel: DesiredChannel | None
    known: ChannelRef | None


def reconcile_conversations(rt: Runtime, targets: dict[str, dict[str, Any]]) -> Result:
    """Reconcile a batch of conversations (``targets``: each with its payload).

    One database read serves the whole batch, and members not known to exist in
    Stream are upserted together; then each channel is brought in step on its own.
    A permanent error fails its conversation only; a transient one stops the batch
    (``Result.error``, the rest ``unreached``) so the job retries what is left.
    """
    # The locks' lease is not renewed: a batch slowed down by Stream stops in time and
    # retries the rest, rather than outlive the locks of the conversations it holds; a
    # batch in a worker that is shutting down stops too, so the shutdown stays short.
    deadline = time.monotonic() + rt.settings.lock_lease / 2
    snapshots = _assign_channels(rt, _read_conversations(rt, targets))
    ready = _ensure_members(rt, [s.channel for s in snapshots.values() if s.channel is not None])
    result = Result("")
    outcomes: list[str] = []
    order = list(targets)
    for n, cid in enumerate(order):
        if n and (time.monotonic() > deadline or rt.stopping.is_set()):
            why = (
                "worker stopping" if rt.stopping.is_set() else "batch ran past half the lock lease"
            )
            result.error = TransientStreamError(f"{why}: the rest goes to a new job")
            result.unreached = order[n:]
            break
        try:
            outcome, in_step = _converge(rt, cid, snapshots[cid], targets[cid], ready=ready)
        except PermanentStreamError as exc:
            result.failed[cid] = exc.describe()
            continue
        except Exception as exc:  # transient: the job retries the targets not done
            result.error = exc
            result.unreached = order[n:]
            break
        if in_step:  # a deletion settles nothing else: a later row may name the channel
            result.settles += snapshots[cid].settles
        outcomes.append(outcome)
    result.outcome = outcomes[0] if len(order) == 1 and outcomes else _summary(outcomes, result)
    return result


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
                desired.update(rt.binding.desired_channels(conn, ids, legacy=is_legacy))
        known = rt.repo.channels_for(list(targets), conn)
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
            if user_id is not None and _is_valid_user(user_id):
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
) -> tuple[str, bool]:
    """Bring one conversation's channel in step with its snapshot.

    Returns the outcome and whether the channel now matches the snapshot (only
    then are the conversation's other open rows settled with this job's).

    A conversation with no members (and no event) gets no channel until it has some,
    unless ``need_channel`` (a message must go somewhere); once it has a channel, the
    channel follows it, emptied when everyone has left.
    """
    channel, known = snapshot.channel, snapshot.known
    if channel is None:
        return _delete_channel(rt, cid, payload, known), False
    creator = channel.created_by
    if creator is None:
        if known is None and not need_channel:
            # No members yet: assign no id either, so an invitation that comes later still
            # gives the channel its invitation_ id when it is first synced.
            return "waiting for members", False
        # Everyone left (or a message needs the channel): the channel stays, emptied;
        # should it have to be created, the system user creates it.
        rt.gateway.upsert_users([SYSTEM_USER])
        creator = str(SYSTEM_USER["id"])
    ref = known or channel_of(rt, channel)
    # The creator (an event's organizer, a proposer) need not be a member: it must exist too.
    needed = list(channel.members)
    if creator not in needed and creator != SYSTEM_USER["id"]:
        needed.append(creator)
    for member in needed:
        _valid_user(member)
    owned = {k: v for k, v in channel.data.items() if k in OWNED_CHANNEL_FIELDS}
    ensure_users(rt, [user_id for user_id in needed if user_id not in ready])
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
    plan = plan_channel(channel, remote.members, remote.data)
    if plan.set_data or plan.unset_data:
        rt.gateway.update_channel_data(
            ref.channel_type, ref.channel_id, plan.set_data, plan.unset_data
        )
    if plan.add:
        _with_users(
            rt, plan.add, lambda: rt.gateway.add_members(ref.channel_type, ref.channel_id, plan.add)
        )
    if plan.remove:
        rt.gateway.remove_members(ref.channel_type, ref.channel_id, plan.remove)
    changes = f"+{len(plan.add)} -{len(plan.remove)} members"
    if payload.get("history") and rt.settings.mirror_messages:
        changes += f", history +{import_history(rt, cid, ref)}"
    return f"{ref.channel_type}:{ref.channel_id} in step ({changes})", True


def channel_of(rt: Runtime, channel: DesiredChannel) -> ChannelRef:
    """Assign the conversation a channel by the naming rules (its map entry if it has one)."""
    try:
        return rt.repo.assign_channel(channel.conversation_id, _candidates(channel))
    except LookupError as exc:
        raise PermanentStreamError(str(exc), endpoint="channel-id") from None


def _candidates(channel: DesiredChannel) -> list[ChannelRef]:
    """The ids the naming rules allow a new channel, preferred first."""
    try:
        preferred = choose_channel_id(channel.facts)
    except InvalidStreamId as exc:
        raise PermanentStreamError(str(exc), endpoint="channel-id") from None
    candidates = [ChannelRef(channel.channel_type, preferred)]
    try:
        fallback = fallback_channel_id(channel.conversation_id)
    except InvalidStreamId:
        pass  # a conversation id Stream cannot take: the preferred id or nothing
    else:
        candidates.append(ChannelRef(channel.channel_type, fallback))
    return candidates


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
                wanted[cid] = _candidates(channel)
    if len(wanted) < 2:
        return snapshots
    assigned = rt.repo.assign_channels(wanted)
    return {
        cid: replace(snapshot, known=assigned.get(cid, snapshot.known))
        for cid, snapshot in snapshots.items()
    }


def _delete_channel(
    rt: Runtime, cid: str, payload: dict[str, Any], known: ChannelRef | None
) -> str:
    """Delete the channel of a conversation the database no longer holds.

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
    owner = rt.repo.conversation_of_channel(ref)
    if owner not in (None, cid):
        # The id the naming rules predicted went to another conversation (a second
        # conversation of the same two people): that channel is not this one's to delete.
        return f"conversation gone, never synced ({ref.channel_id} is {owner}'s)"
    rt.gateway.delete_channel(
        ref.channel_type, ref.channel_id, hard=rt.settings.hard_delete_channels
    )
    return f"{ref.channel_type}:{ref.channel_id} deleted"


def _with_users(rt: Runtime, user_ids: Sequence[str], call: Any) -> Any:
    """Run a call that needs these users in Stream; if Stream says some are missing,
    upsert them all and try once more.

    The known-users cache saves an upsert per reconcile; it can be stale (a user
    deleted in Stream by hand, a Redis restart), and this is where it heals.
    """
    try:
        return call()
    except PermanentStreamError as exc:
        if not _names_missing_users(exc):
            raise
        ensure_users(rt, user_ids, force=True)
        return call()


def _names_missing_users(exc: PermanentStreamError) -> bool:
    # Stream's wording: "... specified in channel.members but don't exist: [...]" on
    # create, "could not find user X from add_members" on add.
    text = str(exc).lower()
    return "don't exist" in text or "could not find user" in text


def _is_valid_user(user_id: str) -> bool:
    try:
        validate_user_id(user_id)
    except InvalidStreamId:
        return False
    return True


def _valid_user(user_id: str) -> None:
    try:
        validate_user_id(user_id)
    except InvalidStreamId as exc:
        raise PermanentStreamError(str(exc), endpoint="user-id") from None


# -- messages ----------------------------------------------------------------------------


def mirror_message(rt: Runtime, message_id: str, payload: dict[str, Any] | None = None) -> Result:
    """Make Stream hold a message of the database as it is now, under its deterministic id.

    A new message is sent; one Stream holds already gets its current text (an edit); one
    the database no longer holds is deleted in Stream. Under the conversation's lock (the
    payload names the conversation of a message gone): the channel is never reconciled
    or deleted by another job between this job's read of the database and its call.
    """
    if not rt.settings.mirror_messages:
        return Result("mirroring off")
    with rt.engine.connect() as conn:
        message = rt.binding.desired_messages(conn, [message_id]).get(message_id)
    conversation_id = message.conversation_id if message else (payload or {}).get("conversation_id")
    if conversation_id is None:  # gone, and its row does not say where it was
        return _unmirror(rt, message_id)
    with rt.locks.hold("conversation", [str(conversation_id)]):
        return _mirror_locked(rt, message_id)


def _unmirror(rt: Runtime, message_id: str) -> Result:
    rt.gateway.delete_message(stream_message_id(message_id))
    return Result("message gone: deleted in Stream")


def _mirror_locked(rt: Runtime, message_id: str) -> Result:
    with rt.engine.connect() as conn:
        message = rt.binding.desired_messages(conn, [message_id]).get(message_id)
        if message is None:
            return _unmirror(rt, message_id)
        ref = rt.repo.channel_for(message.conversation_id, conn)
    if ref is None:
        reconcile_conversation(rt, message.conversation_id, {}, need_channel=True)
        ref = rt.repo.channel_for(message.conversation_id)
        if ref is None:
            return Result("conversation gone")
    if message.sender_id is None:
        rt.gateway.upsert_users([SYSTEM_USER])
    else:
        ensure_users(rt, [message.sender_id])
    body = message_body(message, silent=False)
    try:
        sent = rt.gateway.send_message(ref.channel_type, ref.channel_id, body, author_of(message))
    except PermanentStreamError as exc:
        if exc.status != 404:
            raise
        # The map names a channel Stream does not hold: its creation failed, or is still
        # being retried by the conversation's job. Bring it in step, then send again.
        reconcile_conversation(rt, message.conversation_id, {}, need_channel=True)
        with rt.engine.connect() as conn:
            if not rt.binding.desired_messages(conn, [message_id]):
                return Result("message gone")
        sent = rt.gateway.send_message(ref.channel_type, ref.channel_id, body, author_of(message))
    if sent:
        return Result("sent")
    # Stream holds it already: a repeat, or an edit in the database. Level-triggered,
    # the text is set either way (the id, channel and author never change).
    rt.gateway.update_message_text(message.stream_id, message.text, author_of(message))
    return Result("already there, text set")
