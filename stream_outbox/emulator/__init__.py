"""A local emulator of the Stream Chat server-side REST API.

Start one with ``Emulator().start()`` (or as a context manager) and point the real
``stream-chat`` SDK at it with ``StreamChat(key, secret, base_url=emu.base_url)``.
See ``stream_outbox/emulator/README.md``.
"""

from stream_outbox.emulator.config import DEFAULT_API_KEY, DEFAULT_API_SECRET, EmulatorConfig
from stream_outbox.emulator.emulator import Emulator, run_cli, serve
from stream_outbox.emulator.transport.routes import ENDPOINT_NAMES

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "ENDPOINT_NAMES",
    "Emulator",
    "EmulatorConfig",
    "run_cli",
    "serve",
]
