"""The request log: calls counted per endpoint and outcome, and when each was answered;
calls counted as they arrive too (one still waiting out its latency is in flight).

Not thread-safe by itself: ``EmulatorCore`` calls it under its lock.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestLog:
    """Counts by endpoint and by endpoint and outcome, and the timeline of answered calls."""

    counts: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    arrived: Counter[str] = field(default_factory=Counter)
    # Answered calls with wall-clock times, newest last (bounded): when each call landed.
    timeline: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=500_000))

    def record(self, endpoint: str, outcome: int | str, received: float | None = None) -> None:
        """Count one call of ``endpoint`` that ended with ``outcome`` (status or word).

        With ``received`` (wall-clock seconds), the call also goes on the timeline.
        """
        self.counts[endpoint] += 1
        self.by_status[f"{endpoint} {outcome}"] += 1
        if received is not None:
            self.timeline.append(
                {
                    "endpoint": endpoint,
                    "status": outcome,
                    "received": received,
                    "answered": time.time(),
                }
            )

    def arrive(self, endpoint: str) -> None:
        """Count a call of ``endpoint`` as it arrives, before any latency or answer."""
        self.arrived[endpoint] += 1

    def calls(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """The timeline, optionally of one endpoint."""
        return [call for call in self.timeline if endpoint in (None, call["endpoint"])]

    def summary(self) -> dict[str, Any]:
        """The ``/_emulator/requests`` document."""
        return {
            "counts": dict(self.counts),
            "by_status": dict(self.by_status),
            "arrived": dict(self.arrived),
            "total": sum(self.counts.values()),
        }

    def clear(self) -> None:
        """Forget every call."""
        self.counts.clear()
        self.by_status.clear()
        self.arrived.clear()
        self.timeline.clear()
