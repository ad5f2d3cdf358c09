"""Module for the stock Dramatiq CLI: ``dramatiq worker.actors``.

The Dramatiq CLI imports a module to find its broker and actors, so this module
(unlike the rest of the package) reads the settings from the environment when
imported. ``stream-outbox worker`` is the better entry point: it shuts down
cleanly under a Procfile runner, where the stock CLI kills its children on the
second SIGTERM.
"""

from __future__ import annotations

import dramatiq

from worker.pipeline.broker import build_broker, declare_actors
from worker.settings import load_settings

__all__ = ["broker", "reconcile"]

_settings = load_settings()
broker = build_broker(_settings)
dramatiq.set_broker(broker)
reconcile = declare_actors(broker, _settings)
