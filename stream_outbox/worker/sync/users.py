"""Users: upsert those the database holds, retire those it no longer holds.

A Redis set of users known to be in Stream saves an upsert per conversation
reconcile; it can go stale (a user deleted in Stream by hand, a Redis restart),
and :func:`stream_outbox.worker.sync.conversations` heals it when Stream says a user is missing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.channel_ids import InvalidStreamId, validate_user_id
from stream_outbox.worker.errors import PermanentStreamError
from stream_outbox.worker.store.upsert_queue import UpsertQueue
from stream_outbox.worker.stream.answers import is_deleted_user
from stream_outbox.worker.stream.limits import MAX_USERS_PER_CALL, data_too_large
from stream_outbox.worker.sync.result import Result

if TYPE_CHECKING:
    from stream_outbox.worker.runtime import Runtime

__all__ = ["ensure_users", "is_valid_user", "reconcile_users", "require_valid_user", "user_refusal"]


def _known_users(rt: Runtime) -> str:
    return f"{rt.settings.redis_prefix}:known_users"


def reconcile_users(rt: Runtime, ids: Sequence[str]) -> Result:
    """Upsert users that exist; apply the deleted-user policy to those that do not."""
    failed: dict[str, str] = {}
    with rt.engine.connect() as conn:
        desired = reads.desired_users(rt.binding, conn, ids)
    users = []
    for user_id, user in desired.items():
        refusal = user_refusal(user_id, user.as_stream())
        if refusal is not None:
            failed[user_id] = refusal
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
        _upsert(rt, users)
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


def _upsert(rt: Runtime, users: list[dict[str, Any]]) -> None:
    """Upsert users the database holds, bringing back those Stream holds retired: a user
    deleted in the app (or by hand in Stream) and there again is restored if Stream deleted
    it, and reactivated if Stream deactivated it."""
    try:
        deactivated = rt.gateway.upsert_users(users)
    except PermanentStreamError as exc:
        if not is_deleted_user(exc):
            raise
        deactivated = set()
        for user in users:  # Stream names one deleted user at a time: find them all
            deactivated |= _upsert_restoring(rt, user)
    if deactivated:
        rt.gateway.reactivate_users(sorted(deactivated))


def _upsert_restoring(rt: Runtime, user: dict[str, Any]) -> set[str]:
    try:
        return rt.gateway.upsert_users([user])
    except PermanentStreamError as exc:
        if not is_deleted_user(exc):
            raise
    rt.gateway.restore_users([user["id"]])
    return rt.gateway.upsert_users([user])


def _retire_users(rt: Runtime, user_ids: list[str]) -> dict[str, str]:
    """Apply the deleted-user policy; returns the users Stream refused, each with its error."""
    failed: dict[str, str] = {}
    valid = []
    for user_id in user_ids:
        try:
            validate_user_id(user_id)  # an id Stream cannot name: it never held that user
        except InvalidStreamId as exc:
            failed[user_id] = str(exc)
        else:
            valid.append(user_id)
    policy = rt.settings.deleted_user_policy
    retire = {"deactivate": rt.gateway.deactivate_users, "delete": rt.gateway.delete_users}
    if valid and policy in retire:
        try:
            retire[policy](valid)  # batches of 100
        except PermanentStreamError:
            for user_id in valid:  # isolate the user Stream refuses
                try:
                    retire[policy]([user_id])
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

    Those not known go through the shared queue (:class:`UpsertQueue`), so users many
    jobs need at once are upserted once, 100 a call; any the queue leaves unknown (the
    database lacks them, Stream refuses them, the queue's flusher died or is slow) are
    upserted here, as are all of them with ``force``. Always under the users' locks, like
    a user job: otherwise a user job could rename one of them between the read and the
    upsert, and the older name would land last.
    Returns the ids now known to be in Stream (not those the database lacks).
    """
    if not user_ids:
        return set()
    missing = list(user_ids) if force else _through_queue(rt, _unknown(rt, user_ids))
    if not missing:
        return set(user_ids)
    with rt.locks.hold("user", missing, wait=wait):
        if not force:  # the users' own job may have upserted them while we waited
            missing = _unknown(rt, missing)
            if not missing:
                return set(user_ids)
        with rt.engine.connect() as conn:
            desired = reads.desired_users(rt.binding, conn, missing)
        users = [desired[uid].as_stream() for uid in missing if uid in desired]
        for user in users:
            refused = user_refusal(user["id"], user)
            if refused is not None:
                raise PermanentStreamError(refused, endpoint="UpdateUsers")
        _upsert(rt, users)
        _remember_users(rt, [user["id"] for user in users])
    lacking = set(missing) - set(desired)  # not in the database: not in Stream either
    return {uid for uid in user_ids if uid not in lacking}


def _through_queue(rt: Runtime, missing: list[str]) -> list[str]:
    """Queue these users and wait until they are known, flushing the queue when no one
    else does; returns those still unknown (after the flusher's lease at most)."""
    if not missing:
        return []
    queue = UpsertQueue(rt.redis, prefix=rt.settings.redis_prefix)
    queue.offer(missing)
    deadline = time.monotonic() + queue.lease_ms / 1000
    delay = 0.005
    while missing := _unknown(rt, missing):
        token = queue.take_flusher()
        if token is not None:
            try:
                _flush(rt, queue, token, missing)
            finally:
                queue.release(token)
            return _unknown(rt, missing)
        if time.monotonic() >= deadline or rt.stopping.is_set():
            return missing
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return []


def _flush(rt: Runtime, queue: UpsertQueue, token: str, mine: list[str]) -> None:
    """As the flusher: upsert the queue's users, 100 a call, oldest first, until ours are
    known or out of the queue (the next waiter flushes the rest)."""
    while batch := _unknown_popped(rt, queue, queue.pop(MAX_USERS_PER_CALL)):
        _upsert_free(rt, batch)
        waiting = _unknown(rt, mine)
        if not waiting or not queue.holds_any(waiting) or not queue.renew(token):
            return


def _unknown_popped(rt: Runtime, queue: UpsertQueue, popped: list[str]) -> list[str]:
    """Of the users popped, those still unknown, topped up from the queue to a full call
    (a user queued again while its upsert was in flight is known by now)."""
    batch = _unknown(rt, popped) if popped else []
    while popped and len(batch) < MAX_USERS_PER_CALL:
        popped = queue.pop(MAX_USERS_PER_CALL - len(batch), gather=0)
        batch += _unknown(rt, popped) if popped else []
    return batch


def _upsert_free(rt: Runtime, user_ids: list[str]) -> None:
    """Upsert those of these users the database holds, Stream takes and no one else holds
    (a user job holding one upserts it itself); under their locks."""
    with rt.locks.hold_free("user", user_ids) as held:
        todo = _unknown(rt, held) if held else []
        if not todo:
            return
        with rt.engine.connect() as conn:
            desired = reads.desired_users(rt.binding, conn, todo)
        users = [desired[uid].as_stream() for uid in todo if uid in desired]
        _upsert_isolating(rt, [user for user in users if user_refusal(user["id"], user) is None])


def user_refusal(user_id: str, user: dict[str, Any]) -> str | None:
    """Why Stream would refuse this user (its id, or data over 5 KB), before it is sent."""
    try:
        validate_user_id(user_id)
    except InvalidStreamId as exc:
        return str(exc)
    return data_too_large("user", user_id, user)


def is_valid_user(user_id: str) -> bool:
    """Whether Stream can take ``user_id`` as a user id."""
    try:
        validate_user_id(user_id)
    except InvalidStreamId:
        return False
    return True


def require_valid_user(user_id: str) -> None:
    """Refuse, as a permanent error, a user id Stream cannot take."""
    try:
        validate_user_id(user_id)
    except InvalidStreamId as exc:
        raise PermanentStreamError(str(exc), endpoint="user-id") from None
