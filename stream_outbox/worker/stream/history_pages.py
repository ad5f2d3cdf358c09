"""A channel's whole history through the channel query, page by page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream_outbox.worker.stream.limits import MESSAGES_PER_QUERY
from stream_outbox.worker.stream.protocol import ChannelHistory

__all__ = ["read_history"]


def read_history(query: Callable[[dict[str, Any]], Any]) -> ChannelHistory:
    """Every message ``query`` (one channel query, given its ``messages`` options) yields,
    oldest first, and the members' ``last_read`` from the first answer.

    Stream answers the newest messages first, at most 300 a page: each next page asks
    for those before the oldest so far (``id_lt``). Deleted messages are left out.
    """
    pages: list[list[dict[str, Any]]] = []
    reads: dict[str, str] = {}
    before: str | None = None
    while True:
        options: dict[str, Any] = {"limit": MESSAGES_PER_QUERY}
        if before is not None:
            options["id_lt"] = before
        response = query(options)
        page = list(response.get("messages", []))
        if before is None:
            reads = {
                str(read["user"]["id"]): str(read.get("last_read") or "")
                for read in response.get("read", [])
                if read.get("user")
            }
        pages.append(page)
        if len(page) < MESSAGES_PER_QUERY:
            break
        before = str(page[0]["id"])
    messages = tuple(
        (str(message["id"]), str(message.get("created_at") or ""))
        for page in reversed(pages)
        for message in page
        if not message.get("deleted_at") and message.get("type") != "deleted"
    )
    return ChannelHistory(messages, reads)
