"""``stream-outbox demo``: a story played through the reference app against the emulator."""

from __future__ import annotations

from stream_outbox.worker.demo.run import run_demo

__all__ = ["run_demo"]
