"""Capture triggers installed and dropped: in one transaction, audited, at a moment when no
app transaction holds the bound tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from psycopg.errors import LockNotAvailable
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError
from tenacity import retry, retry_if_exception, stop_after_delay, wait_random

from stream_outbox.app_hooks.binding import Binding
from stream_outbox.app_hooks.trigger_sql import TableTriggers
from stream_outbox.app_hooks.triggers import TriggerError, drop_triggers, install_triggers
from stream_outbox.worker.errors import ConfigurationError
from stream_outbox.worker.store import audit

__all__ = ["drop", "in_one_transaction", "install", "trigger_count"]

T = TypeVar("T")


def _locked_out(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and isinstance(exc.orig, LockNotAvailable)


def in_one_transaction(engine: Engine, work: Callable[[Connection], T], *, wait: float) -> T:
    """Run ``work`` (which takes the tables' locks with NOWAIT) in one transaction, again
    and again, a few milliseconds apart, until a moment when no app transaction holds
    one of them, for up to ``wait`` seconds.

    Waiting in PostgreSQL's lock queue instead would hold the app's new transactions
    behind the change, and deadlock with one that takes two bound tables in another
    order than the change (the ORM inserts unrelated tables in either order).
    """

    @retry(
        retry=retry_if_exception(_locked_out),
        stop=stop_after_delay(wait),
        wait=wait_random(0, 0.002),
        reraise=True,
    )
    def attempt() -> T:
        with engine.begin() as conn:
            return work(conn)

    try:
        return attempt()
    except OperationalError as exc:
        if _locked_out(exc):
            raise ConfigurationError(
                f"triggers: the app's tables were never all free at once in {wait:g} s; "
                "nothing changed (try again, or with a longer --wait)"
            ) from None
        raise


def install(engine: Engine, binding: Binding, *, actor: str, wait: float) -> list[TableTriggers]:
    """Install (or replace) the triggers the binding calls for, audited, in one transaction."""

    def work(conn: Connection) -> list[TableTriggers]:
        try:
            tables = install_triggers(conn, binding, nowait=True)
        except TriggerError as exc:
            raise ConfigurationError(f"triggers: {exc}") from None
        labels = [table.label for table in tables]
        _audit(
            conn, actor=actor, action="triggers_install", count=trigger_count(tables), tables=labels
        )
        return tables

    return in_one_transaction(engine, work, wait=wait)


def drop(engine: Engine, *, actor: str, wait: float) -> int:
    """Drop every capture trigger, audited, in one transaction; returns how many."""

    def work(conn: Connection) -> int:
        dropped = drop_triggers(conn, nowait=True)
        _audit(conn, actor=actor, action="triggers_drop", count=dropped, tables=[])
        return dropped

    return in_one_transaction(engine, work, wait=wait)


def trigger_count(tables: list[TableTriggers]) -> int:
    """How many triggers the tables hold."""
    return sum(len(table.triggers) for table in tables)


def _audit(conn: Connection, *, actor: str, action: str, count: int, tables: list[str]) -> None:
    detail = {"triggers": count, "tables": tables}
    audit.write(conn, actor=actor, action=action, count=count, detail=detail)
