"""Fixtures of the pipeline tests beyond the suite's ``pipeline``: the app's web front end
with the chat router, and the shapes app bound to the worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Header
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session, sessionmaker

from stream_outbox.app_hooks import install
from stream_outbox.app_hooks.chat_router import chat_router
from tests.apps.shapes import BINDING, Base
from tests.support.pipeline import Pipeline
from tests.support.settings import API_KEY, API_SECRET


@pytest.fixture()
def frontend(pipeline: Pipeline) -> Iterator[TestClient]:
    """The app's web front end with the chat router, on the pipeline's database."""

    def connection() -> Iterator[Connection]:
        with pipeline.engine.connect() as conn:
            yield conn

    def current_user_id(x_user_id: str = Header()) -> str:  # the app's own auth, simplified
        return x_user_id

    app = FastAPI()
    app.include_router(
        chat_router(
            connection=connection,
            current_user_id=current_user_id,
            api_key=API_KEY,
            api_secret=API_SECRET,
            app_id="1460405",
        )
    )
    with TestClient(app) as client:
        yield client


@pytest.fixture()
def shapes(pipeline: Pipeline, clean_db: Engine) -> Iterator[sessionmaker[Session]]:
    """The shapes app's tables, captured, and the worker's runtime on its binding."""
    Base.metadata.create_all(clean_db)
    factory = sessionmaker(clean_db, expire_on_commit=False)
    install(factory, BINDING)
    try:
        with pipeline.bound_to(BINDING):
            yield factory
    finally:
        names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with clean_db.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {names} CASCADE"))
