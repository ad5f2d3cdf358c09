"""The reference chat app: the legacy chat endpoints, stream-outbox's chat router and the
page, over the reference models with capture installed.

The signed-in user is the ``X-Demo-User`` header (the page sends its ``user`` query
parameter): the demo's stand-in for the app's real authentication, so that two tabs of
one browser can be two users.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Header, HTTPException
from sqlalchemy import Connection, create_engine, select
from sqlalchemy.orm import sessionmaker

from examples.chat_app.legacy import legacy_router
from examples.chat_app.page import FRONTEND_DIST, Page
from stream_outbox.app_hooks import install
from stream_outbox.app_hooks.chat_router import chat_router
from stream_outbox.app_hooks.reference import User

__all__ = ["create_app"]


def create_app(
    database_url: str,
    stream_api_key: str,
    stream_api_secret: str,
    stream_base_url: str | None = None,
    frontend_dist: Path = FRONTEND_DIST,
) -> FastAPI:
    """The app on the database at ``database_url`` (migrated, with the reference tables).

    ``stream_base_url`` is the Stream URL the page's client uses (an emulator's; None for
    Stream itself); ``frontend_dist`` the built page.
    """
    engine = create_engine(database_url, pool_pre_ping=True)
    sessions = sessionmaker(engine, expire_on_commit=False)
    install(sessions)

    def connection() -> Iterator[Connection]:
        with engine.connect() as conn:
            yield conn

    def current_user_id(x_demo_user: str | None = Header(None)) -> uuid.UUID:
        try:
            user_id = uuid.UUID(x_demo_user or "")
        except ValueError:
            raise HTTPException(401, "sign in: X-Demo-User is missing or not a user id") from None
        with engine.connect() as conn:
            if conn.scalar(select(User.id).where(User.id == user_id)) is None:
                raise HTTPException(401, f"no user {user_id}")
        return user_id

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(title="reference chat app", lifespan=lifespan)
    app.include_router(legacy_router(sessions, current_user_id))
    app.include_router(
        chat_router(
            connection=connection,
            current_user_id=current_user_id,
            api_key=stream_api_key,
            api_secret=stream_api_secret,
            base_url=stream_base_url,
        )
    )

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.mount("/", Page(frontend_dist), name="page")
    return app
