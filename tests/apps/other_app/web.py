"""The other application's web app: FastAPI with the chat router, bound to its models.

Served as a factory, so that nothing is read from the environment at import time::

    DATABASE_URL=... GETSTREAM_API_KEY=... GETSTREAM_API_SECRET=... \\
        uvicorn --factory tests.apps.other_app.web:create_app

The signed-in account comes from the ``X-User-Id`` header (the app's stand-in for its
own authentication); an account that does not exist, or is soft-deleted, is refused.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Header, HTTPException
from sqlalchemy import Connection, select

from stream_outbox.app_hooks.chat_router import chat_router
from tests.apps.other_app.chat_binding import binding
from tests.apps.other_app.db import engine_for
from tests.apps.other_app.models import Account

__all__ = ["create_app"]


def create_app() -> FastAPI:
    """The app, configured from DATABASE_URL, GETSTREAM_API_KEY and GETSTREAM_API_SECRET."""
    engine = engine_for(os.environ["DATABASE_URL"])

    def connection() -> Iterator[Connection]:
        with engine.connect() as conn:
            yield conn

    def current_account_id(x_user_id: str | None = Header(None)) -> int:
        try:
            account_id = int(x_user_id or "")
        except ValueError:
            raise HTTPException(401, "sign in: X-User-Id is missing or not an account id") from None
        with engine.connect() as conn:
            live = conn.scalar(
                select(Account.id).where(Account.id == account_id, Account.deleted_at.is_(None))
            )
        if live is None:
            raise HTTPException(401, "no such account")
        return account_id

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(title="other app", lifespan=lifespan)
    app.include_router(
        chat_router(
            connection=connection,
            current_user_id=current_account_id,
            api_key=os.environ["GETSTREAM_API_KEY"],
            api_secret=os.environ["GETSTREAM_API_SECRET"],
            binding=binding,
        )
    )

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
