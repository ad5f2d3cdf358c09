"""The admin web dashboard (Starlette): pages, sign-in, templates."""

from __future__ import annotations

from stream_outbox.worker.dashboard.app import create_app, serve

__all__ = ["create_app", "serve"]
