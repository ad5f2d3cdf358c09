"""The interface the rest of the worker holds Stream by.

:class:`~stream_outbox.worker.stream.gateway.StreamGateway` implements it over the ``stream-chat``
SDK; the tests' fakes implement it in memory. A move to Stream's newer SDK
(``getstream``) is a second implementation of :class:`Gateway`, nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = ["Gateway", "HistoryPage", "RateBudget", "RemoteChannel", "StreamReader"]


@dataclass(frozen=True)
class HistoryPage:
    """A page of a channel's messages as Stream answers it, oldest first (``(id,
    created_at)``, deleted ones left out); ``before`` the id to ask the next, older, page
    with (None: this page is the oldest)."""

    messages: tuple[tuple[str, str], ...] = ()
    before: str | None = None


@dataclass(frozen=True)
class RemoteChannel:
    """What Stream holds for a channel; read with its history, also its newest page of
    messages (``latest``) and each member's ``last_read`` as Stream answers it."""

    channel_type: str
    channel_id: str
    members: frozenset[str]
    data: dict[str, Any]
    created_by: str | None = None
    latest: HistoryPage | None = field(default=None, compare=False)
    reads: dict[str, str] = field(default_factory=dict, compare=False)


class RateBudget(Protocol):
    """Waits for a slot of an endpoint's shared budget (see :mod:`worker.store.rate_budget`)."""

    def acquire(self, endpoint: str) -> None: ...


class StreamReader(Protocol):
    """The read-only calls (verify and compare need no more)."""

    def query_users(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The users Stream holds among ``user_ids``."""
        ...

    def channel_states(
        self, cids: Sequence[str], *, history: bool = False
    ) -> dict[str, RemoteChannel]:
        """What Stream holds for these channels (``type:id``), by cid; those it holds none
        of (or holds deleted) are absent. With ``history``, each with its newest messages
        and its members' reads."""
        ...

    def history_page(self, channel_type: str, channel_id: str, before: str) -> HistoryPage:
        """The page of a channel's messages before the message ``before``."""
        ...


class Gateway(StreamReader, Protocol):
    """Every Stream operation the reconciles make.

    Failures raise :class:`~stream_outbox.worker.errors.TransientStreamError` (retry later) or
    :class:`~stream_outbox.worker.errors.PermanentStreamError` (Stream refused the request).
    """

    def thread_calls(self) -> int:
        """Stream calls made so far by the calling thread (a job's: it runs on one thread)."""
        ...

    def call_latency(self) -> float:
        """A moving average of the time a Stream call takes, in seconds."""
        ...

    def upsert_users(self, users: Sequence[dict[str, Any]]) -> set[str]:
        """Create or update users; returns those Stream holds deactivated."""
        ...

    def reactivate_users(self, user_ids: Sequence[str]) -> None:
        """Reactivate deactivated users; users Stream does not know are skipped."""
        ...

    def deactivate_users(self, user_ids: Sequence[str]) -> None:
        """Deactivate users; users Stream does not know are skipped."""
        ...

    def delete_users(self, user_ids: Sequence[str]) -> None:
        """Delete users (soft); users Stream does not know are skipped."""
        ...

    def restore_users(self, user_ids: Sequence[str]) -> None:
        """Undo the soft delete of users."""
        ...

    def get_or_create_channel(
        self,
        channel_type: str,
        channel_id: str,
        *,
        created_by: str,
        members: Sequence[str],
        data: dict[str, Any],
    ) -> RemoteChannel:
        """Get the channel, creating it with ``members`` and ``data`` if missing."""
        ...

    def channel_members(self, channel_type: str, channel_id: str) -> list[str]:
        """Every member of a channel."""
        ...

    def update_channel_data(
        self, channel_type: str, channel_id: str, set_: dict[str, Any], unset: Sequence[str]
    ) -> dict[str, Any] | None:
        """Set and unset custom fields of a channel; its data as Stream answers it."""
        ...

    def add_members(self, channel_type: str, channel_id: str, user_ids: Sequence[str]) -> None:
        """Add members to a channel."""
        ...

    def remove_members(self, channel_type: str, channel_id: str, user_ids: Sequence[str]) -> None:
        """Remove members from a channel."""
        ...

    def update_members(
        self, channel_type: str, channel_id: str, add: Sequence[str], remove: Sequence[str]
    ) -> frozenset[str] | None:
        """Add and remove members of a channel, both in one call; the members Stream
        answers it holds after (None when unknown)."""
        ...

    def delete_channel(self, channel_type: str, channel_id: str, *, hard: bool = False) -> None:
        """Delete a channel; one Stream does not know counts as deleted."""
        ...

    def delete_channels(self, cids: Sequence[str], *, hard: bool = False) -> dict[str, str]:
        """Delete channels (``type:id``) in batches; those Stream does not know count as
        deleted. Returns the channels Stream did not delete, each with its reason."""
        ...

    def mark_read(self, channel_type: str, channel_id: str, user_id: str, message_id: str) -> bool:
        """Mark the channel read for a member up to a message (server-side); ``False`` when
        Stream marked nothing (the user is no member of the channel in Stream)."""
        ...

    def send_message(
        self, channel_type: str, channel_id: str, message: dict[str, Any], user_id: str
    ) -> bool:
        """Send a message with a client-chosen id; False when that id already exists."""
        ...

    def update_message_text(self, message_id: str, text: str, user_id: str) -> datetime | None:
        """Set a message's text, its other fields kept (undeleted first if Stream holds it
        deleted); Stream's ``updated_at`` of it (``None`` if not said)."""
        ...

    def restore_message(self, message_id: str, text: str, user_id: str) -> bool:
        """Undelete a message, then set its text if Stream's differs; ``False`` when Stream
        does not hold it."""
        ...

    def delete_message(self, message_id: str) -> None:
        """Delete a message (soft); one Stream does not know counts as deleted."""
        ...
