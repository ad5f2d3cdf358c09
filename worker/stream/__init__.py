"""Talking to Stream: the gateway over the SDK, its HTTP session, and what Stream's errors mean."""

from __future__ import annotations

from worker.stream.gateway import StreamGateway
from worker.stream.protocol import Gateway, RemoteChannel, StreamReader

__all__ = ["Gateway", "RemoteChannel", "StreamGateway", "StreamReader"]
