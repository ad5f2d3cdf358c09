"""Dramatiq middleware of our own."""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

__all__ = ["CurrentBroker"]


class CurrentBroker(Middleware):
    """Remembers, per worker thread, the broker of the message being processed (a batch
    hands its rest to a new job on that broker, not on Dramatiq's global one)."""

    _local = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Remember ``broker`` for this thread."""
        self._local.broker = broker

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        """Forget it."""
        self._local.broker = None

    after_skip_message = after_process_message

    @classmethod
    def get(cls) -> dramatiq.Broker | None:
        """The broker of this thread's message, if one is being processed."""
        broker: dramatiq.Broker | None = getattr(cls._local, "broker", None)
        return broker
