"""Pure decisions: what to send Stream, and how the relay groups rows into jobs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app_hooks.binding import DesiredChannel

__all__ = ["OWNED_CHANNEL_FIELDS", "ChannelPlan", "Job", "plan_channel", "plan_jobs"]

# Custom channel fields this product writes; anything else on the channel is left alone.
OWNED_CHANNEL_FIELDS = ("name", "conversation_id", "event_id")


@dataclass(frozen=True)
class ChannelPlan:
    """The calls that bring a channel in step: data to set/unset, members to add/remove."""

    set_data: dict[str, Any] = field(default_factory=dict)
    unset_data: tuple[str, ...] = ()
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """Nothing to do."""
        return not (self.set_data or self.unset_data or self.add or self.remove)


def plan_channel(
    desired: DesiredChannel, members: Iterable[str], data: dict[str, Any]
) -> ChannelPlan:
    """Compare a desired channel with what Stream holds (``members``, ``data``)."""
    held = set(members)
    want = set(desired.members)
    set_data = {
        key: value
        for key, value in desired.data.items()
        if key in OWNED_CHANNEL_FIELDS and data.get(key) != value
    }
    unset = tuple(key for key in OWNED_CHANNEL_FIELDS if key in data and key not in desired.data)
    return ChannelPlan(set_data, unset, tuple(sorted(want - held)), tuple(sorted(held - want)))


@dataclass(frozen=True)
class Job:
    """One Dramatiq message: reconcile these targets, then settle these rows."""

    kind: str
    target_ids: tuple[str, ...]
    row_ids: tuple[int, ...]
    payload: dict[str, Any] = field(default_factory=dict)


def plan_jobs(rows: Sequence[Any], users_per_job: int = 100) -> list[Job]:
    """Coalesce claimed rows: one job per conversation or message, users in batches.

    ``rows`` have ``id``, ``target_kind``, ``target_id`` and ``payload``. Many rows
    of one target make one job; the payloads merge (a conversation's delete keeps
    the channel it names).
    """
    grouped: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        grouped.setdefault((row.target_kind, row.target_id), []).append(row)
    jobs: list[Job] = []
    users: list[tuple[str, list[Any]]] = []
    for (kind, target_id), group in grouped.items():
        if kind == "user":
            users.append((target_id, group))
            continue
        payload: dict[str, Any] = {}
        for row in group:
            payload.update(row.payload or {})
        jobs.append(Job(kind, (target_id,), tuple(row.id for row in group), payload))
    for start in range(0, len(users), users_per_job):
        batch = users[start : start + users_per_job]
        jobs.append(
            Job(
                "user",
                tuple(target_id for target_id, _ in batch),
                tuple(row.id for _, group in batch for row in group),
                # which rows belong to which user: a user Stream rejects fails its rows only
                {"rows": {target_id: [row.id for row in group] for target_id, group in batch}},
            )
        )
    return jobs
