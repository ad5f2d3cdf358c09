"""A channel's history as Stream answers it, a page at a time: what a page and its reads say."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stream_outbox.worker.stream.limits import MESSAGES_PER_QUERY
from stream_outbox.worker.stream.protocol import HistoryPage

__all__ = ["page_of", "reads_of"]


def page_of(answer: Mapping[str, Any], limit: int = MESSAGES_PER_QUERY) -> HistoryPage:
    """The page of messages a channel's answer carries (a channel query's, or a channel of
    QueryChannels' asked for ``limit`` messages).

    Stream answers the newest messages first, at most 300 a page, oldest first within the
    page: a full page may have older ones, asked for with ``id_lt`` the oldest's id.
    Deleted messages are left out (but a deleted one still marks where the page starts).
    """
    messages = list(answer.get("messages") or [])
    before = str(messages[0]["id"]) if messages and len(messages) >= limit else None
    kept = tuple(
        (str(message["id"]), str(message.get("created_at") or ""))
        for message in messages
        if not message.get("deleted_at") and message.get("type") != "deleted"
    )
    return HistoryPage(kept, before)


def reads_of(answer: Mapping[str, Any]) -> dict[str, str]:
    """Each member's ``last_read`` in a channel's answer (``read``), by user id."""
    return {
        str(read["user"]["id"]): str(read.get("last_read") or "")
        for read in answer.get("read") or []
        if read.get("user")
    }
