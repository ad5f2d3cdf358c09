"""What a reconcile did, for the actor that settles its outbox rows."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Result"]


@dataclass
class Result:
    """What a reconcile did: a summary for the job's log line, and the targets that failed
    on their own (from which the job_runner decides the job's outcome)."""

    summary: str
    failed: dict[str, str] = field(default_factory=dict)
    # Other open rows of the targets that this reconcile brought in step (see settles)
    settles: list[int] = field(default_factory=list)
    # Targets not reached: ``error`` (transient) stopped the batch before them
    unreached: list[str] = field(default_factory=list)
    error: Exception | None = None
