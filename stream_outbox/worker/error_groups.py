"""Failed rows grouped by cause, pure: how a ``last_error`` reads as a cause, and the groups.

A cause is Stream's endpoint (or the error's type), the HTTP status, Stream's error
code and the error text with ids and numbers normalised away, so that 28 rows that
failed for one reason read as one group. A row's cause key is stored when it fails
(``cause_key``, indexed for failed rows): the admin layer counts the groups in SQL and
groups here only rows failed without one (by a worker older than the column).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stream_outbox.worker.errors import AdminError

__all__ = [
    "Cause",
    "ErrorGroup",
    "FailedRow",
    "cause_of",
    "find_group",
    "group_failures",
    "merge_groups",
]

SAMPLES = 5

_ATTEMPTS = re.compile(r"^after \d+ attempts?: ")
_HEAD = re.compile(
    r"^(?P<endpoint>[A-Za-z_][\w.]*)(?: HTTP (?P<status>\d{3}))?(?: code (?P<code>[\w-]+))?: "
)
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
_NUMBER = re.compile(r"(?<![\w-])[-+]?\d+(?:[.,]\d+)*(?![\w-])")
_WITH_DIGIT = re.compile(r"[\w:-]*\d[\w:-]*")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class FailedRow:
    """What grouping reads of a failed outbox row."""

    id: int
    target_kind: str
    target_id: str
    last_error: str | None
    updated_at: datetime


@dataclass(frozen=True)
class Cause:
    """Why rows failed: endpoint (or error type), HTTP status, Stream's code, normalised text."""

    endpoint: str
    status: int | None
    code: str | None
    text: str

    @property
    def key(self) -> str:
        """A short stable name of the cause, for URLs and ``--replay``."""
        raw = f"{self.endpoint}\x1f{self.status}\x1f{self.code}\x1f{self.text}"
        return hashlib.sha256(raw.encode()).hexdigest()[:12]

    def __str__(self) -> str:
        parts = [self.endpoint]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code is not None:
            parts.append(f"code {self.code}")
        return f"{' '.join(parts)}: {self.text}" if self.endpoint else self.text


def normalise(text: str) -> str:
    """Error text with UUIDs and ids as ``<id>`` and numbers as ``<n>``, spaces collapsed."""
    text = _UUID.sub("<id>", text)
    text = _NUMBER.sub("<n>", text)
    text = _WITH_DIGIT.sub("<id>", text)
    return _SPACES.sub(" ", text).strip()


def cause_of(last_error: str | None) -> Cause:
    """The cause a row's ``last_error`` names (``after N attempts:`` set aside)."""
    text = _ATTEMPTS.sub("", (last_error or "").strip())
    head = _HEAD.match(text)
    if head is None:
        return Cause("", None, None, normalise(text) or "no error recorded")
    status = head["status"]
    return Cause(
        head["endpoint"],
        int(status) if status else None,
        head["code"],
        normalise(text[head.end() :]),
    )


@dataclass
class ErrorGroup:
    """The failed rows of one cause: how many, when, which kinds, a few targets, their ids."""

    cause: Cause
    count: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    kinds: set[str] = field(default_factory=set)
    samples: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The cause's key."""
        return self.cause.key

    def add(self, row: FailedRow) -> None:
        """Count one more failed row of this cause."""
        self.count += 1
        self.ids.append(row.id)
        self.kinds.add(row.target_kind)
        if self.first_seen is None or row.updated_at < self.first_seen:
            self.first_seen = row.updated_at
        if self.last_seen is None or row.updated_at > self.last_seen:
            self.last_seen = row.updated_at
        target = f"{row.target_kind}:{row.target_id}"
        if len(self.samples) < SAMPLES and target not in self.samples:
            self.samples.append(target)

    def merge(self, other: ErrorGroup) -> None:
        """Count in ``other``, a group of the same cause."""
        self.count += other.count
        self.ids = sorted(self.ids + other.ids)
        self.kinds |= other.kinds
        seen = (self.first_seen, self.last_seen, other.first_seen, other.last_seen)
        known = [t for t in seen if t is not None]
        self.first_seen = min(known, default=None)
        self.last_seen = max(known, default=None)
        for target in other.samples:
            if len(self.samples) < SAMPLES and target not in self.samples:
                self.samples.append(target)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (ids in order)."""
        return {
            "key": self.key,
            "cause": str(self.cause),
            "endpoint": self.cause.endpoint,
            "status": self.cause.status,
            "code": self.cause.code,
            "count": self.count,
            "first_seen": self.first_seen.isoformat() if self.first_seen else None,
            "last_seen": self.last_seen.isoformat() if self.last_seen else None,
            "kinds": sorted(self.kinds),
            "sample_targets": list(self.samples),
            "ids": sorted(self.ids),
        }


def group_failures(rows: Iterable[FailedRow]) -> list[ErrorGroup]:
    """Failed rows by cause, the largest group first (then the most recent)."""
    groups: dict[Cause, ErrorGroup] = {}
    for row in rows:
        cause = cause_of(row.last_error)
        groups.setdefault(cause, ErrorGroup(cause)).add(row)
    for group in groups.values():
        group.ids.sort()
    return _largest_first(groups.values())


def merge_groups(*lists: Iterable[ErrorGroup]) -> list[ErrorGroup]:
    """Groups of several reads as one list: those of one cause merged, largest first."""
    merged: dict[str, ErrorGroup] = {}
    for group in (g for groups in lists for g in groups):
        if group.key in merged:
            merged[group.key].merge(group)
        else:
            merged[group.key] = group
    return _largest_first(merged.values())


def _largest_first(groups: Iterable[ErrorGroup]) -> list[ErrorGroup]:
    return sorted(
        groups,
        key=lambda g: (-g.count, -(g.last_seen.timestamp() if g.last_seen else 0.0), g.key),
    )


def find_group(groups: Iterable[ErrorGroup], key: str) -> ErrorGroup:
    """The group of ``key``; :class:`AdminError` when no failed row has that cause now."""
    for group in groups:
        if group.key == key:
            return group
    raise AdminError(f"no failed rows of cause {key!r}: replayed already, or a mistyped key")
