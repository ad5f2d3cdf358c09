"""What Stream held for a channel when the worker last saw it, kept in Redis.

Every answer Stream gives about a channel the worker reconciles (its creation or read,
a member update, a data update) names the channel's members and data. Kept here, it
lets the next change of that channel go to Stream in one call, with no read first: the
plan is made against what Stream held, and the answer of that call (the members Stream
holds after it) is checked against the database, so a channel changed by someone else
meanwhile is corrected by a second call, never left wrong.

An entry is a hint, never the truth: it is dropped before any call that changes the
channel and written again from that call's answer (a crash between the two leaves no
entry, and the next reconcile reads Stream), and it lives ``ttl`` seconds. Only
channels of at most 100 members are kept: one UpdateChannel answers with all of them.
A reconcile that must see Stream itself (a cut-over's, a resync's, a backfill's) reads
it whatever is kept here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from redis import Redis

from stream_outbox.worker.store.repository import ChannelRef
from stream_outbox.worker.stream.limits import MAX_MEMBERS_PER_CALL

__all__ = ["HeldChannel", "HeldChannels"]

HELD_TTL_S = 6 * 3600  # a few hundred bytes a channel reconciled in the last six hours


@dataclass(frozen=True)
class HeldChannel:
    """A channel's members and owned data, as Stream last answered them."""

    members: frozenset[str]
    data: dict[str, Any]


class HeldChannels:
    """What Stream held for channels, by channel, in Redis (``{prefix}:held:{type}:{id}``)."""

    def __init__(self, redis: Redis, prefix: str, ttl: int = HELD_TTL_S) -> None:
        self._redis, self._prefix, self._ttl = redis, prefix, ttl

    def _key(self, ref: ChannelRef) -> str:
        return f"{self._prefix}:held:{ref.channel_type}:{ref.channel_id}"

    def get(self, ref: ChannelRef) -> HeldChannel | None:
        """What Stream last held for ``ref``, if it is kept."""
        raw = self._redis.get(self._key(ref))
        if raw is None:
            return None
        entry = json.loads(raw)
        return HeldChannel(frozenset(entry["members"]), dict(entry["data"]))

    def put(
        self,
        ref: ChannelRef,
        members: Iterable[str],
        data: Mapping[str, Any],
        fields: Iterable[str],
    ) -> None:
        """Keep what Stream answered for ``ref``: its members and those of its ``fields``
        it holds (a channel of over 100 members is not kept)."""
        held = sorted(members)
        if len(held) > MAX_MEMBERS_PER_CALL:
            self.forget(ref)
            return
        owned = {key: data[key] for key in fields if key in data}
        entry = json.dumps({"members": held, "data": owned}, separators=(",", ":"))
        self._redis.set(self._key(ref), entry, ex=self._ttl)

    def forget(self, ref: ChannelRef) -> None:
        """Drop what is kept for ``ref`` (before a call that changes the channel)."""
        self._redis.delete(self._key(ref))
