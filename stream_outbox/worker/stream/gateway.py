"""The one module that talks to Stream: a small interface over the ``stream-chat`` SDK.

Every call names its Stream endpoint, takes a slot of the shared rate budget,
counts itself in the metrics and turns SDK and HTTP failures into
:class:`TransientStreamError` or :class:`PermanentStreamError`. A gateway given
``patience`` (the operators' tools) waits out a 429 as Stream's headers ask, and goes
again, rather than fail. A move to Stream's newer SDK, or a fake in unit tests,
touches this file only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import requests
from stream_chat import StreamChat
from stream_chat.base.exceptions import StreamAPIException

from stream_outbox.worker import metrics
from stream_outbox.worker.errors import PermanentStreamError, TransientStreamError
from stream_outbox.worker.settings import Settings
from stream_outbox.worker.stream import channel_calls as sdk
from stream_outbox.worker.stream.answers import (
    error_from,
    is_duplicate_message,
    is_not_found,
    rate_limit_wait,
)
from stream_outbox.worker.stream.history_pages import page_of, reads_of
from stream_outbox.worker.stream.http_session import StreamTransportError, http_session
from stream_outbox.worker.stream.limits import (
    MAX_CHANNELS_PER_DELETE,
    MAX_MEMBERS_PER_CALL,
    MAX_USERS_PER_CALL,
    MESSAGES_PER_QUERY,
    QUERY_CHANNELS_PER_CALL,
    limits_from_answer,
)
from stream_outbox.worker.stream.protocol import HistoryPage, RateBudget, RemoteChannel
from stream_outbox.worker.stream.tasks import TaskFailed, channels_not_deleted, follow_task
from stream_outbox.worker.stream.times import parse_time

__all__ = ["MAX_MEMBERS_PER_CALL", "MAX_USERS_PER_CALL", "RemoteChannel", "StreamGateway"]


log = logging.getLogger(__name__)

T = TypeVar("T")
# How much each call moves the moving average of call times
_LATENCY_WEIGHT = 0.1


class StreamGateway:
    """The :class:`~stream_outbox.worker.stream.protocol.Gateway` over the ``stream-chat`` SDK, one
    SDK client per thread."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        base_url: str | None = None,
        timeout: float = 6.0,
        budget: RateBudget | None = None,
        stopping: threading.Event | None = None,
        patience: float = 0.0,
    ) -> None:
        self._options: dict[str, Any] = {"timeout": timeout}
        # Seconds a call may spend waiting out 429s (and a dry budget) before it fails:
        # none for the worker (its job retries later, freeing the thread)
        self._patience = patience
        self._stopping = stopping  # set when the process shuts down: task polls end at once
        if base_url:
            self._options["base_url"] = base_url.rstrip("/")
        self._key, self._secret, self._budget = api_key, api_secret, budget
        self._local = threading.local()
        # Calls counted per context: a job's thread, and the tasks it fans out (each run in
        # a copy of the job's context, so they add to the same tally)
        self._tally: ContextVar[list[int] | None] = ContextVar(f"calls_{id(self)}", default=None)
        self._latency = 0.0  # a moving average of a call's time, in seconds

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        budget: RateBudget | None = None,
        stopping: threading.Event | None = None,
        *,
        patience: float = 0.0,
    ) -> StreamGateway:
        """The gateway the settings name (credentials, URL, timeout); a
        :class:`ConfigurationError` names a missing credential."""
        key, secret = settings.stream_credentials()
        return cls(
            key,
            secret,
            base_url=settings.stream_chat_url,
            timeout=settings.stream_timeout.total_seconds(),
            budget=budget,
            stopping=stopping,
            patience=patience,
        )

    def __repr__(self) -> str:
        return f"StreamGateway(api_key={self._key!r}, base_url={self._options.get('base_url')!r})"

    def thread_calls(self) -> int:
        """Stream calls made so far by the calling thread (a job's: it runs on one thread),
        with those of the tasks it fanned out in copies of its context."""
        return self._counter()[0]

    def call_latency(self) -> float:
        """A moving average of the time a Stream call takes, in seconds (0 before any)."""
        return self._latency

    def _counter(self) -> list[int]:
        tally = self._tally.get()
        if tally is None:
            tally = [0]
            self._tally.set(tally)
        return tally

    # -- users -------------------------------------------------------------------------

    def upsert_users(self, users: Sequence[dict[str, Any]]) -> set[str]:
        """Create or update users, in calls of at most 100; returns those Stream holds
        deactivated (an upsert leaves a deactivated user deactivated)."""
        deactivated: set[str] = set()
        for chunk in _chunks(users, MAX_USERS_PER_CALL):
            response = self.call("UpdateUsers", StreamChat.upsert_users, list(chunk))
            held = (response or {}).get("users") or {}
            deactivated.update(uid for uid, user in held.items() if user.get("deactivated_at"))
        return deactivated

    def reactivate_users(self, user_ids: Sequence[str]) -> None:
        """Reactivate deactivated users; users Stream does not know are skipped."""
        for user_id in user_ids:
            self.call("ReactivateUser", StreamChat.reactivate_user, user_id, missing_ok=True)

    def deactivate_users(self, user_ids: Sequence[str]) -> None:
        """Deactivate users, 100 a call; users Stream does not know are skipped."""
        batch = ("DeactivateUsers", StreamChat.deactivate_users, ())
        self._retire(user_ids, batch, ("DeactivateUser", StreamChat.deactivate_user))

    def delete_users(self, user_ids: Sequence[str]) -> None:
        """Delete users (soft), 100 a call, following Stream's task to its end; users
        Stream does not know are skipped."""
        batch = ("DeleteUsers", StreamChat.delete_users, ("soft",))
        self._retire(user_ids, batch, ("DeleteUser", StreamChat.delete_user))

    def restore_users(self, user_ids: Sequence[str]) -> None:
        """Undo the soft delete of users (their memberships are not restored)."""
        for chunk in _chunks(user_ids, MAX_USERS_PER_CALL):
            self.call("RestoreUsers", StreamChat.restore_users, list(chunk))

    def _retire(
        self,
        user_ids: Sequence[str],
        batch: tuple[str, Callable[..., Any], tuple[Any, ...]],
        single: tuple[str, Callable[..., Any]],
    ) -> None:
        """A batch endpoint's calls of 100 ids, each task followed to its end.

        A batch that names a user Stream does not know (created and deleted before it was
        ever synced) fails whole: it goes again with the users Stream holds (one
        ``QueryUsers``), and only should that fail too, one by one (these endpoints allow
        60 calls a minute)."""
        endpoint, call, args = batch
        for chunk in _chunks(user_ids, MAX_USERS_PER_CALL):
            try:
                answer = self.call(endpoint, call, list(chunk), *args)
            except PermanentStreamError as exc:
                if not is_not_found(exc):
                    raise
                held = self.query_users(chunk, include_deactivated=True)
                known = [user_id for user_id in chunk if user_id in held]
                try:
                    answer = self.call(endpoint, call, known, *args) if known else None
                except PermanentStreamError as again:  # one went meanwhile
                    if not is_not_found(again):
                        raise
                    for user_id in known:
                        self.call(single[0], single[1], user_id, missing_ok=True)
                    continue
            if answer and answer.get("task_id"):
                task_id = str(answer["task_id"])
                get_task = partial(self.call, "GetTask", StreamChat.get_task, task_id)
                follow_task(get_task, task_id, endpoint, stopping=self._stopping)

    def rate_limits(self) -> dict[str, int]:
        """The app's server-side limits per endpoint, calls per minute, as Stream tells them."""
        answer = self.call("GetRateLimits", StreamChat.get_rate_limits, server_side=True)
        return limits_from_answer(answer or {})

    def query_users(
        self, user_ids: Sequence[str], *, include_deactivated: bool = False
    ) -> dict[str, dict[str, Any]]:
        """The users Stream holds among ``user_ids`` (deactivated ones too, if asked)."""
        found: dict[str, dict[str, Any]] = {}
        options: dict[str, Any] = {"include_deactivated_users": True} if include_deactivated else {}
        for chunk in _chunks(user_ids, MAX_USERS_PER_CALL):
            query = {"id": {"$in": list(chunk)}}
            response = self.call(
                "QueryUsers", StreamChat.query_users, query, limit=len(chunk), **options
            )
            found.update({user["id"]: user for user in response.get("users", [])})
        return found

    # -- channels ----------------------------------------------------------------------

    def get_or_create_channel(
        self,
        channel_type: str,
        channel_id: str,
        *,
        created_by: str,
        members: Sequence[str],
        data: dict[str, Any],
    ) -> RemoteChannel:
        """Get the channel, creating it with ``members`` (first 100) and ``data`` if missing."""
        payload = {**data, "members": list(members[:MAX_MEMBERS_PER_CALL])}
        response = self.call(
            "GetOrCreateChannel",
            sdk.create_channel,
            channel_type,
            channel_id,
            payload,
            created_by,
        )
        remote = _remote_channel(channel_type, channel_id, response)
        if response.get("channel", {}).get("member_count", 0) > len(remote.members):
            members_now = frozenset(self.channel_members(channel_type, channel_id))
            remote = replace(remote, members=members_now)
        return remote

    def channel_members(self, channel_type: str, channel_id: str) -> list[str]:
        """Every member of a channel, paging through Stream's query-members by user id."""
        members: list[str] = []
        while True:
            after = members[-1] if members else None
            page = self.call("QueryMembers", sdk.query_members, channel_type, channel_id, after)
            members += [member["user_id"] for member in page]
            if len(page) < MAX_MEMBERS_PER_CALL:
                return members

    def channel_states(
        self, cids: Sequence[str], *, history: bool = False
    ) -> dict[str, RemoteChannel]:
        """What Stream holds for these channels (``type:id``), by cid, read-only: 30 a
        QueryChannels call (filtered by ``cid``), members from its answer (up to 100 a
        channel; query-members for a channel with more). Those Stream holds none of, or
        holds deleted, are absent. With ``history``, each with its newest page of messages
        (300) and its members' ``last_read``."""
        found: dict[str, RemoteChannel] = {}
        messages = MESSAGES_PER_QUERY if history else 0
        for chunk in _chunks(cids, QUERY_CHANNELS_PER_CALL):
            response = self.call(
                "QueryChannels",
                StreamChat.query_channels,
                {"cid": {"$in": list(chunk)}},
                limit=len(chunk),
                member_limit=MAX_MEMBERS_PER_CALL,
                message_limit=messages,
            )
            for answer in response.get("channels", []):
                remote = self._held_channel(answer)
                if remote is not None:
                    if history:
                        remote = replace(remote, latest=page_of(answer), reads=reads_of(answer))
                    found[f"{remote.channel_type}:{remote.channel_id}"] = remote
        return found

    def _held_channel(self, answer: dict[str, Any]) -> RemoteChannel | None:
        """A channel of QueryChannels' answer, its members whole (None: deleted)."""
        channel = answer.get("channel") or {}
        if channel.get("deleted_at"):
            return None
        channel_type, channel_id = str(channel.get("type")), str(channel.get("id"))
        remote = _remote_channel(channel_type, channel_id, answer)
        if int(channel.get("member_count") or 0) > len(remote.members):
            members = frozenset(self.channel_members(channel_type, channel_id))
            remote = replace(remote, members=members)
        return remote

    def history_page(self, channel_type: str, channel_id: str, before: str) -> HistoryPage:
        """The page of a channel's messages before the message ``before`` (read-only; the
        channel must exist): a channel query."""
        options = {"limit": MESSAGES_PER_QUERY, "id_lt": before}
        answer = self.call(
            "GetOrCreateChannel", sdk.query_messages, channel_type, channel_id, options
        )
        return page_of(answer)

    def channels_with_messages_since(self, since: str, *, offset: int = 0) -> list[dict[str, Any]]:
        """A page (30) of the channels whose newest message is at or after ``since``
        (Stream's RFC 3339 time), oldest ``last_message_at`` first, each as ``cid``
        (``type:id``) and ``read`` (its members' read state, as Stream answers it):
        QueryChannels, without members or messages."""
        response = self.call(
            "QueryChannels",
            StreamChat.query_channels,
            {"last_message_at": {"$gte": since}},
            [{"field": "last_message_at", "direction": 1}],
            limit=QUERY_CHANNELS_PER_CALL,
            offset=offset,
            member_limit=0,
            message_limit=0,
        )
        found = []
        for answer in response.get("channels", []):
            c = answer.get("channel") or {}
            cid = str(c.get("cid") or f"{c.get('type')}:{c.get('id')}")
            found.append({"cid": cid, "read": list(answer.get("read") or [])})
        return found

    def message_page(
        self, channel_type: str, channel_id: str, before: str | None = None
    ) -> list[dict[str, Any]]:
        """A channel's newest page of messages (300), or the page before the message
        ``before``, oldest first, deleted ones included, each as Stream answers it."""
        options: dict[str, Any] = {"limit": MESSAGES_PER_QUERY}
        if before is not None:
            options["id_lt"] = before
        answer = self.call(
            "GetOrCreateChannel", sdk.query_messages, channel_type, channel_id, options
        )
        return list(answer.get("messages") or [])

    def update_channel_data(
        self, channel_type: str, channel_id: str, set_: dict[str, Any], unset: Sequence[str]
    ) -> dict[str, Any] | None:
        """Set and unset custom fields of a channel (partial update); the channel's data
        as Stream answers it (None if the answer holds none)."""
        response = self.call(
            "UpdateChannelPartial",
            sdk.update_partial,
            channel_type,
            channel_id,
            set_,
            list(unset),
        )
        channel = (response or {}).get("channel")
        return dict(channel) if isinstance(channel, dict) else None

    def add_members(self, channel_type: str, channel_id: str, user_ids: Sequence[str]) -> None:
        """Add members, in calls of at most 100."""
        for chunk in _chunks(user_ids, MAX_MEMBERS_PER_CALL):
            self.call("UpdateChannel", sdk.add_members, channel_type, channel_id, list(chunk))

    def remove_members(self, channel_type: str, channel_id: str, user_ids: Sequence[str]) -> None:
        """Remove members, in calls of at most 100."""
        for chunk in _chunks(user_ids, MAX_MEMBERS_PER_CALL):
            self.call("UpdateChannel", sdk.remove_members, channel_type, channel_id, list(chunk))

    def update_members(
        self, channel_type: str, channel_id: str, add: Sequence[str], remove: Sequence[str]
    ) -> frozenset[str] | None:
        """Add and remove members in one UpdateChannel (at most 100 of each a call); the
        members Stream answers the channel holds after one call (None after several, or
        an answer that names none)."""
        adds = [list(chunk) for chunk in _chunks(add, MAX_MEMBERS_PER_CALL)]
        removes = [list(chunk) for chunk in _chunks(remove, MAX_MEMBERS_PER_CALL)]
        calls = max(len(adds), len(removes))
        response: Any = None
        for n in range(calls):
            to_add = adds[n] if n < len(adds) else []
            to_remove = removes[n] if n < len(removes) else []
            call = partial(sdk.update_members, add=to_add, remove=to_remove)
            response = self.call("UpdateChannel", call, channel_type, channel_id)
        members = (response or {}).get("members")
        if calls != 1 or not isinstance(members, list):
            return None
        return frozenset(m["user_id"] for m in members if isinstance(m, dict) and "user_id" in m)

    def delete_channel(self, channel_type: str, channel_id: str, *, hard: bool = False) -> None:
        """Delete a channel; one Stream does not know counts as deleted."""
        self.call(
            "DeleteChannel",
            sdk.delete_channel,
            channel_type,
            channel_id,
            hard,
            missing_ok=True,
        )

    def delete_channels(self, cids: Sequence[str], *, hard: bool = False) -> dict[str, str]:
        """Delete channels (``type:id``), 100 a ``DeleteChannels`` call, each call's task
        followed to its end (a lone channel: one ``DeleteChannel``, a call less); those
        Stream does not know count as deleted. Returns the channels Stream did not
        delete, each with its reason.

        A failed task that names its channels refuses those only; a call (or failed
        task) Stream refuses naming none goes again in halves, down to single channels,
        so that one channel Stream refuses does not hold back the rest. A transient
        failure raises: deleting again is harmless."""
        refused: dict[str, str] = {}
        for chunk in _chunks(cids, MAX_CHANNELS_PER_DELETE):
            refused.update(self._delete_batch(list(chunk), hard))
        return refused

    def _delete_batch(self, cids: list[str], hard: bool) -> dict[str, str]:
        if len(cids) == 1:
            channel_type, _, channel_id = cids[0].partition(":")
            try:
                self.delete_channel(channel_type, channel_id, hard=hard)
            except PermanentStreamError as exc:
                return {cids[0]: exc.describe()}
            return {}
        try:
            answer = self.call("DeleteChannels", StreamChat.delete_channels, cids, hard_delete=hard)
            task_id = str((answer or {}).get("task_id") or "")
            if not task_id:  # answered at once: its result, if any, is in the answer
                return _not_deleted((answer or {}).get("result"))
            get_task = partial(self.call, "GetTask", StreamChat.get_task, task_id)
            return _not_deleted(
                follow_task(get_task, task_id, "DeleteChannels", stopping=self._stopping)
            )
        except PermanentStreamError as exc:
            named = _not_deleted(exc.result) if isinstance(exc, TaskFailed) else {}
            if named:
                return named
            half = len(cids) // 2
            return {
                **self._delete_batch(cids[:half], hard),
                **self._delete_batch(cids[half:], hard),
            }

    def mark_read(self, channel_type: str, channel_id: str, user_id: str, message_id: str) -> bool:
        """Mark the channel read for a member up to a message (server-side MarkRead);
        ``False`` when Stream marked nothing: its answer holds no read event, as for a user
        who is no member of the channel (GetStream/stream-chat-react#2753)."""
        answer = self.call("MarkRead", sdk.mark_read, channel_type, channel_id, user_id, message_id)
        return bool((answer or {}).get("event"))

    # -- messages ----------------------------------------------------------------------

    def send_message(
        self, channel_type: str, channel_id: str, message: dict[str, Any], user_id: str
    ) -> bool:
        """Send a message with a client-chosen id; False when that id already exists."""
        try:
            self.call(
                "SendMessage",
                sdk.send_message,
                channel_type,
                channel_id,
                message,
                user_id,
            )
        except PermanentStreamError as exc:
            if is_duplicate_message(exc):
                return False
            raise
        return True

    def update_message_text(self, message_id: str, text: str, user_id: str) -> datetime | None:
        """Set a message's text (a partial update: its other fields stay); the message's
        ``updated_at`` as Stream stamped it (``None`` if its answer has none).

        Stream refuses to update a message it holds deleted: one the database holds (a
        soft delete undone) is undeleted (as ``user_id``), then its text set. Where the
        undelete is refused too, Stream's first answer stands.
        """
        set_text = partial(
            self.call,
            "UpdateMessagePartial",
            StreamChat.update_message_partial,
            message_id,
            {"set": {"text": text}},
            user_id,
        )
        try:
            answer = set_text()
        except PermanentStreamError as refused:
            if is_not_found(refused):
                raise
            try:
                self.call("UndeleteMessage", StreamChat.undelete_message, message_id, user_id)
            except PermanentStreamError:
                raise refused from None
            answer = set_text()
        held = (answer or {}).get("message") or {}
        return parse_time(held.get("updated_at"))

    def restore_message(self, message_id: str, text: str, user_id: str) -> bool:
        """Undelete a message (as ``user_id``), then set its text if Stream's differs: one
        call for a soft delete undone. One Stream holds not deleted gets its text only;
        ``False`` when Stream does not hold it (it is to be sent)."""
        try:
            answer = self.call("UndeleteMessage", StreamChat.undelete_message, message_id, user_id)
        except PermanentStreamError as exc:
            if is_not_found(exc):
                return False
            self.update_message_text(message_id, text, user_id)  # not deleted: its text only
            return True
        held = (answer or {}).get("message") or {}
        if held.get("text") != text:
            self.update_message_text(message_id, text, user_id)
        return True

    def delete_message(self, message_id: str) -> None:
        """Delete a message (soft); one Stream does not know counts as deleted."""
        self.call("DeleteMessage", StreamChat.delete_message, message_id, missing_ok=True)

    # -- plumbing ----------------------------------------------------------------------

    def _client(self) -> StreamChat:
        client: StreamChat | None = getattr(self._local, "client", None)
        if client is None:
            client = StreamChat(self._key, self._secret, **self._options)
            client.set_http_session(http_session(client, self._remember))  # type: ignore[arg-type]
            self._local.client = client
        return client

    def _remember(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self._local.last_headers = response.headers

    def call(
        self,
        endpoint: str,
        call: Callable[..., Any],
        *args: Any,
        missing_ok: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Call an SDK method as ``endpoint``: a slot of its budget taken first, counted per
        thread and in the metrics, its errors turned into ours (``None`` for a missing
        resource when ``missing_ok``). Every call to Stream goes through here.

        With ``patience``, a 429 (or a budget with no slot) waits as long as Stream asks,
        and the call goes again, for up to that many seconds in all."""
        deadline = time.monotonic() + self._patience
        while True:
            try:
                return self._call_once(endpoint, call, *args, missing_ok=missing_ok, **kwargs)
            except TransientStreamError as exc:
                wait = rate_limit_wait(exc, deadline - time.monotonic())
                if wait is None:
                    raise
                log.info("%s rate-limited: going again in %.1f s", endpoint, wait)
                time.sleep(wait)

    def _call_once(
        self,
        endpoint: str,
        call: Callable[..., Any],
        *args: Any,
        missing_ok: bool = False,
        **kwargs: Any,
    ) -> Any:
        if self._budget is not None:
            self._budget.acquire(endpoint)
        self._local.last_headers = {}
        self._counter()[0] += 1
        started = time.perf_counter()
        try:
            result = call(self._client(), *args, **kwargs)
        except StreamAPIException as exc:
            error = error_from(endpoint, exc, self._local.last_headers)
            metrics.STREAM_CALLS.labels(endpoint, str(exc.status_code)).inc()
            if missing_ok and is_not_found(error):
                return None
            raise error from None
        except StreamTransportError as exc:
            reason = "timeout" if exc.timed_out else "connection"
            metrics.STREAM_CALLS.labels(endpoint, reason).inc()
            what = "timed out" if exc.timed_out else "connection failed"
            raise TransientStreamError(f"{what}: {exc}", endpoint=endpoint) from None
        except requests.Timeout as exc:
            metrics.STREAM_CALLS.labels(endpoint, "timeout").inc()
            raise TransientStreamError(
                f"timed out: {type(exc).__name__}", endpoint=endpoint
            ) from None
        except requests.RequestException as exc:
            metrics.STREAM_CALLS.labels(endpoint, "connection").inc()
            raise TransientStreamError(
                f"connection failed: {type(exc).__name__}", endpoint=endpoint
            ) from None
        finally:
            took = time.perf_counter() - started
            self._latency = (
                took
                if not self._latency
                else (self._latency + (took - self._latency) * _LATENCY_WEIGHT)
            )
        metrics.STREAM_CALLS.labels(endpoint, "200").inc()
        return result


def _remote_channel(channel_type: str, channel_id: str, response: dict[str, Any]) -> RemoteChannel:
    channel = dict(response.get("channel", {}))
    created_by = (channel.get("created_by") or {}).get("id")
    members = frozenset(m["user_id"] for m in response.get("members", []) if "user_id" in m)
    return RemoteChannel(channel_type, channel_id, members, channel, created_by)


def _not_deleted(result: Any) -> dict[str, str]:
    """The channels a DeleteChannels result names not deleted, each with its reason as
    an outbox row's error tells it."""
    return {cid: f"DeleteChannels: {why}" for cid, why in channels_not_deleted(result).items()}


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
