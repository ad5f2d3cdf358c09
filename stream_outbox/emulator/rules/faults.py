"""Fault injection (failures, dropped or hung connections, latency) and endpoint names.

Not thread-safe by itself: ``EmulatorCore`` calls it under its lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

ANY_ENDPOINT = "*"

# Other names people and tools use for an endpoint, mapped to Stream's own name.
ALIASES = {
    "UpsertUsers": "UpdateUsers",
    "UpsertUser": "UpdateUsers",
    "PartialUpdateUsers": "UpdateUsersPartial",
    "UpdateUserPartial": "UpdateUsersPartial",
    "AddMembers": "UpdateChannel",
    "RemoveMembers": "UpdateChannel",
    "CreateChannel": "GetOrCreateChannel",
    "QueryChannel": "GetOrCreateChannel",
    "PartialUpdateChannel": "UpdateChannelPartial",
}


def canonical(endpoint: str | None) -> str:
    """Map an alias such as ``UpsertUsers`` to Stream's endpoint name; ``None`` means any."""
    if endpoint is None or endpoint == "":
        return ANY_ENDPOINT
    return ALIASES.get(endpoint, endpoint)


@dataclass
class Failure:
    """Answer the next ``times`` calls with ``status``."""

    times: int
    status: int
    code: int | None = None
    message: str | None = None


@dataclass
class Interruption:
    """Drop (``hang_seconds == 0``) or hang the next ``times`` calls."""

    times: int
    hang_seconds: float = 0.0
    apply: bool = False


@dataclass
class Decision:
    """What to do with one call before (or instead of) handling it."""

    delay: float = 0.0
    failure: Failure | None = None
    interruption: Interruption | None = None


@dataclass
class Faults:
    """Pending injected failures and interruptions, and the latency added to calls."""

    latency_ms: float = 0.0
    endpoint_latency_ms: dict[str, float] = field(default_factory=dict)
    failures: dict[str, list[Failure]] = field(default_factory=dict)
    interruptions: dict[str, list[Interruption]] = field(default_factory=dict)

    def decide(self, endpoint: str) -> Decision:
        """Consume at most one pending fault for ``endpoint`` and report the delay."""
        delay_ms = self.endpoint_latency_ms.get(endpoint, self.latency_ms)
        decision = Decision(delay=delay_ms / 1000.0)
        for key in (endpoint, ANY_ENDPOINT):
            pending = self.interruptions.get(key)
            if pending:
                decision.interruption = _take(pending)
                return decision
            failures = self.failures.get(key)
            if failures:
                decision.failure = _take(failures)
                return decision
        return decision

    def add_failure(self, endpoint: str, failure: Failure) -> None:
        """Queue an injected failure."""
        self.failures.setdefault(canonical(endpoint), []).append(failure)

    def add_interruption(self, endpoint: str, interruption: Interruption) -> None:
        """Queue a dropped or hung connection."""
        self.interruptions.setdefault(canonical(endpoint), []).append(interruption)

    def set_latency(self, ms: float, endpoint: str | None = None) -> None:
        """Add ``ms`` of latency to every call, or to one endpoint's calls."""
        if endpoint is None:
            self.latency_ms = float(ms)
        else:
            self.endpoint_latency_ms[canonical(endpoint)] = float(ms)

    def clear(self) -> None:
        """Remove all injected failures, drops, hangs and latency."""
        self.failures.clear()
        self.interruptions.clear()
        self.endpoint_latency_ms.clear()
        self.latency_ms = 0.0

    def pending(self) -> dict[str, Any]:
        """Pending faults, for ``GET /_emulator/faults``."""
        return {
            "latency_ms": self.latency_ms,
            "endpoint_latency_ms": dict(self.endpoint_latency_ms),
            "failures": {k: [vars(f) for f in v] for k, v in self.failures.items() if v},
            "interruptions": {k: [vars(i) for i in v] for k, v in self.interruptions.items() if v},
        }


_Fault = TypeVar("_Fault", Failure, Interruption)


def _take(pending: list[_Fault]) -> _Fault:
    head = pending[0]
    head.times -= 1
    if head.times <= 0:
        pending.pop(0)
    return head
