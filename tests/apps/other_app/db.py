"""The other application's schema and sessions.

``create_tables`` makes the app's own tables (the outbox's come from
``stream-outbox migrate``); ``plain_sessions`` are the app as it was before going
live (nothing captured); ``installed_sessions`` are the app after its one line of
start-up code, ``stream_outbox.app_hooks.install(SessionLocal, binding)``.
"""

from __future__ import annotations

import sys

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

import stream_outbox.app_hooks
from tests.apps.other_app.chat_binding import binding
from tests.apps.other_app.models import OtherBase

__all__ = ["create_tables", "engine_for", "installed_sessions", "plain_sessions", "psycopg_url"]


def psycopg_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` URLs as SQLAlchemy's psycopg 3 dialect names them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def engine_for(url: str) -> Engine:
    """An engine on the app's database."""
    return create_engine(psycopg_url(url), pool_pre_ping=True)


def create_tables(engine: Engine) -> None:
    """Create the app's own tables (not the outbox's)."""
    OtherBase.metadata.create_all(engine)


def plain_sessions(engine: Engine) -> sessionmaker[Session]:
    """Sessions of the app before it goes live: nothing is captured."""
    return sessionmaker(engine, expire_on_commit=False)


def installed_sessions(engine: Engine) -> sessionmaker[Session]:
    """Sessions of the app once live: every change that matters writes its outbox rows."""
    factory = sessionmaker(engine, expire_on_commit=False)
    stream_outbox.app_hooks.install(factory, binding)
    return factory


def main(argv: list[str]) -> int:
    """``python -m tests.apps.other_app.db DATABASE_URL``: create the app's tables there."""
    if len(argv) != 1:
        print("usage: python -m tests.apps.other_app.db DATABASE_URL", file=sys.stderr)
        return 2
    engine = engine_for(argv[0])
    try:
        create_tables(engine)
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
