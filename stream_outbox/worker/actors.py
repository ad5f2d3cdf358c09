"""Module for the stock Dramatiq CLI: ``dramatiq stream_outbox.worker.actors``.

The Dramatiq CLI imports a module to find its broker and actors, so this module
(unlike the rest of the package) reads the settings from the environment when
imported. ``stream-outbox worker`` is the better entry point: it shuts down
cleanly under a Procfile runner, where the stock CLI kills its children on the
second SIGTERM.
"""

from __future__ import annotations

import dramatiq
from sqlalchemy import create_engine

from stream_outbox.worker.app_binding import resolve_binding
from stream_outbox.worker.pipeline.broker import PRIORITY_ACTOR_NAME, build_broker, declare_actors
from stream_outbox.worker.settings import load_settings

__all__ = ["broker", "reconcile", "reconcile_priority"]

_settings = load_settings()
# The app's binding (OUTBOX_BINDING), refused now if it does not fit the database; the
# runtime the first job builds loads the same one.
_engine = create_engine(_settings.database_url)
resolve_binding(_engine, _settings.binding)
_engine.dispose()
broker = build_broker(_settings)
dramatiq.set_broker(broker)
# Both queues, the backlog's and the priority one's, are consumed by `dramatiq worker.actors`
reconcile = declare_actors(broker, _settings)
reconcile_priority = broker.get_actor(PRIORITY_ACTOR_NAME)
