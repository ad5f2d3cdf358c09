"""Going live: put every existing user and conversation through the outbox, with history.

Conversations get ``legacy_{id}`` channels unless the naming rules give them an
invitation or proposal id, and their messages are imported (see
:mod:`stream_outbox.worker.sync.history`). The run is resumable: its position is kept in its audit
row, so a crash or Ctrl-C continues after the last id written, and running it
twice only writes rows whose reconciles find Stream already in step.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

from sqlalchemy import Connection, Engine, func

from stream_outbox.app_hooks import reads
from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.reads import live_query

__all__ = ["Scope"]


class Scope:
    """Which conversations a backfill covers: all, a creation-time range, or given ids."""

    def __init__(
        self,
        binding: Binding,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        only: Collection[str] | None = None,
    ) -> None:
        self.binding = binding
        self.since, self.until = since, until
        self.only = list(only) if only else None

    @property
    def everything(self) -> bool:
        """No filter: users without conversations are backfilled too."""
        return self.since is None and self.until is None and self.only is None

    def kinds(self) -> list[str]:
        """Users (unfiltered runs only; channels upsert their own members) and conversations."""
        return ["user", "conversation"] if self.everything else ["conversation"]

    def selector(self) -> Callable[[Connection, str, str | None, int], list[str]]:
        """Keyset pages of the ids in scope."""

        def select_ids(conn: Connection, kind: str, after: str | None, limit: int) -> list[str]:
            if kind == "user":
                return reads.ids_after(self.binding, conn, kind, after, limit)
            return reads.ids_after(
                self.binding,
                conn,
                kind,
                after,
                limit,
                since=self.since,
                until=self.until,
                only=self.only,
            )

        return select_ids

    def totals(self, engine: Engine) -> dict[str, int]:
        """How many ids each kind has in scope (for the progress bars)."""
        b = self.binding
        key, created = b.column("conversation", "id"), b.column("conversation", "created_at")
        query = live_query(b, "conversation", func.count())
        if self.since is not None:
            query = query.where(created >= self.since)
        if self.until is not None:
            query = query.where(created <= self.until)
        if self.only is not None:
            query = query.where(key.in_(b.typed_ids(key, self.only)))
        with engine.connect() as conn:
            totals = {"conversation": int(conn.scalar(query) or 0)}
            if self.everything:
                totals["user"] = reads.count(b, conn, "user")
        return totals
