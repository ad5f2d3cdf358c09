"""Pure decision: how the relay groups claimed outbox rows into Dramatiq jobs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stream_outbox.app_hooks.changes import READ_EVENT, READS_ONLY, merge_payloads
from stream_outbox.worker.sync.plan import SEE_STREAM_KEY

__all__ = ["Job", "batch_job", "job_targets", "plan_jobs"]


@dataclass(frozen=True)
class Job:
    """One Dramatiq message: reconcile these targets, then settle these rows."""

    kind: str
    target_ids: tuple[str, ...]
    row_ids: tuple[int, ...]
    payload: dict[str, Any] = field(default_factory=dict)


# Rows an operator or a migration writes (a backfill, a resync, a cut-over's reconcile, a
# migration on demand): their reconcile reads Stream rather than trust what Stream last
# answered (see store.held_channels), as does a replay of such a row.
SEE_STREAM = frozenset({"backfill", "resync", "reconcile", "recheck", "migrate"})


def plan_jobs(
    rows: Sequence[Any], users_per_job: int = 100, conversations_per_job: int = 50
) -> list[Job]:
    """Coalesce claimed rows: many rows of one target make one job, targets go in batches.

    ``rows`` have ``id``, ``target_kind``, ``target_id`` and ``payload``. A target's
    payloads merge (a conversation's delete keeps the channel it names). Users go
    ``users_per_job`` to a job and conversations ``conversations_per_job``, each job
    with a map of which rows belong to which target, so one target's failure fails
    its own rows only; a conversation asking for a history copy (a long job) and
    each message get a job of their own (``edit`` in its payload when its rows, with an
    ``event``, are all updates; ``restore`` when one undoes a soft delete and none is an
    insert). A conversation's ``reads`` (who read) are the union of its rows'; one whose
    rows are all reads is marked :data:`READS_ONLY`.
    """
    grouped: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        grouped.setdefault((row.target_kind, row.target_id), []).append(row)
    jobs: list[Job] = []
    users: list[tuple[str, list[Any], dict[str, Any]]] = []
    conversations: list[tuple[str, list[Any], dict[str, Any]]] = []
    for (kind, target_id), group in grouped.items():
        payload: dict[str, Any] = {}
        for row in group:
            payload = merge_payloads(payload, row.payload or {})
        payload.pop(READS_ONLY, None)  # a row written again later (a recheck) says it anew
        events = {getattr(row, "event", "") for row in group}
        if kind == "conversation" and events & SEE_STREAM:
            payload[SEE_STREAM_KEY] = True  # a resync, a backfill, a cut-over's: see Stream itself
        if kind == "conversation" and "delete" in events:
            payload["deleted"] = True  # its batch gathers a burst's deletions (job_runner)
        if kind == "conversation" and events == {READ_EVENT}:
            payload[READS_ONLY] = True  # marks read, and nothing else (its members stay)
        if kind == "user":
            users.append((target_id, group, {}))
        elif kind == "conversation" and not payload.get("history"):
            conversations.append((target_id, group, payload))
        elif kind == "conversation":
            jobs += _batches("conversation", [(target_id, group, payload)], 1)
        else:
            if kind == "message" and events == {"update"}:
                payload["edit"] = True  # Stream holds it most likely: set its text first
            elif kind == "message" and "restore" in events and "insert" not in events:
                payload["restore"] = True  # Stream holds it deleted most likely: undelete
            jobs.append(Job(kind, (target_id,), tuple(row.id for row in group), payload))
    jobs += _batches("conversation", conversations, conversations_per_job)
    jobs += _batches("user", users, users_per_job)
    return jobs


def _batches(
    kind: str, targets: list[tuple[str, list[Any], dict[str, Any]]], size: int
) -> list[Job]:
    jobs = []
    for start in range(0, len(targets), size):
        batch = targets[start : start + size]
        payload: dict[str, Any] = {
            "rows": {target_id: [row.id for row in group] for target_id, group, _ in batch}
        }
        if kind == "conversation":
            payload["payloads"] = {target_id: p for target_id, _, p in batch if p}
        jobs.append(
            Job(
                kind,
                tuple(target_id for target_id, _, _ in batch),
                tuple(row.id for _, group, _ in batch for row in group),
                payload,
            )
        )
    return jobs


def batch_job(kind: str, targets: dict[str, tuple[list[int], dict[str, Any]]]) -> Job:
    """A user or conversation job for these targets, each with its rows (and a
    conversation's payload)."""
    payload: dict[str, Any] = {
        "rows": {target_id: rows for target_id, (rows, _) in targets.items()}
    }
    if kind == "conversation":
        payload["payloads"] = {
            target_id: target_payload
            for target_id, (_, target_payload) in targets.items()
            if target_payload
        }
    return Job(
        kind, tuple(targets), tuple(row for rows, _ in targets.values() for row in rows), payload
    )


def job_targets(
    target_ids: Sequence[str], row_ids: Sequence[int], payload: dict[str, Any]
) -> dict[str, tuple[list[int], dict[str, Any]]]:
    """A conversation job's targets, each with its rows and its payload.

    Reads both message shapes: batches (``rows`` and ``payloads`` maps) and one
    conversation whose payload is the job's payload (messages queued by older
    releases, and jobs sent by hand).
    """
    if "payloads" not in payload:
        return {target_id: (list(row_ids), dict(payload)) for target_id in target_ids[:1]}
    rows: dict[str, list[int]] = payload.get("rows", {})
    payloads: dict[str, dict[str, Any]] = payload["payloads"]
    return {
        target_id: (list(rows.get(target_id, [])), dict(payloads.get(target_id, {})))
        for target_id in target_ids
    }
