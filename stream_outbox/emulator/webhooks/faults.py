"""Injected webhook faults: drop, delay, duplicate, reorder (pure; the sender locks).

* ``drop``: the event is never sent (as if every attempt were lost);
* ``delay``: the event waits ``seconds`` before its first attempt (the events queued
  behind it on its channel wait too);
* ``duplicate``: the event is delivered twice, the same ``X-Webhook-Id`` each time (as
  when Stream retries a call whose answer was lost);
* ``reorder``: the event is held back and sent after the next event of its channel (or
  after ``seconds`` when no other comes).

Each applies to the next ``times`` events, of ``event_type`` only when given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = ("drop", "delay", "duplicate", "reorder")
DEFAULT_HOLD_SECONDS = 1.0


@dataclass
class WebhookFault:
    """One pending fault."""

    kind: str
    times: int = 1
    seconds: float = 0.0
    event_type: str | None = None

    def matches(self, event_type: str) -> bool:
        """Whether it applies to an event of this type."""
        return self.event_type in (None, "", "*", event_type)


@dataclass
class WebhookFaults:
    """Pending webhook faults, first come first served."""

    pending: list[WebhookFault] = field(default_factory=list)

    def add(self, fault: WebhookFault) -> None:
        """Queue a fault; ``kind`` one of ``KINDS``, ``times`` at least 1."""
        if fault.kind not in KINDS:
            raise ValueError(f"webhook fault kind must be one of {', '.join(KINDS)}")
        if fault.times < 1:
            raise ValueError("times must be at least 1")
        if fault.seconds < 0:
            raise ValueError("seconds must not be negative")
        if fault.kind == "delay" and fault.seconds <= 0:
            raise ValueError("a delay needs seconds > 0")
        self.pending.append(fault)

    def take(self, event_type: str) -> WebhookFault | None:
        """Consume one use of the first fault that applies to ``event_type``."""
        for fault in self.pending:
            if fault.matches(event_type):
                fault.times -= 1
                if fault.times <= 0:
                    self.pending.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        """Forget every pending fault."""
        self.pending.clear()

    def listed(self) -> list[dict[str, Any]]:
        """The pending faults, for ``GET /_emulator/webhooks``."""
        return [vars(f).copy() for f in self.pending]
