"""Users: upsert those the database holds, retire those it no longer holds.

A Redis set of users known to be in Stream saves an upsert per conversation
reconcile; it can go stale (a user deleted in Stream by hand, a Redis restart),
and :func:`stream_outbox.worker.sync.conversations` heals it when Stream says a user is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.channel_ids import InvalidStreamId, validate_user_id
from stream_outbox.worker.errors import PermanentStreamError
from stream_outbox.worker.stream.answers import is_deleted_user
from stream_outbox.worker.stream.limits import data_too_large
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
