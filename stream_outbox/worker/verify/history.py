"""The history part of the comparison, pure: messages once, at their time, in order; reads.

:func:`compare_history` compares two histories held whole; :func:`walk_history` the
same, page by page, for histories of any length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "Found",
    "Wanted",
    "compare_history",
    "compare_reads",
    "held_read",
    "instant",
    "walk_history",
]

# One difference: what differs, the database's value, Stream's
Found = tuple[str, str, str]


def compare_history(
    *, want: Mapping[str, str | None], have: Mapping[str, str | None]
) -> list[Found]:
    """Each message once, at its original time, in order (``have`` in Stream's order)."""
    found = [
        (f"message {message_id}", "present", "missing")
        for message_id in want
        if message_id not in have
    ]
    found += [
        (f"message {message_id}", "missing", "present")
        for message_id in have
        if message_id not in want
    ]
    for message_id, wanted in want.items():
        held = have.get(message_id)
        if wanted is not None and held is not None and instant(held) != instant(wanted):
            found.append((f"created_at of {message_id}", wanted, held))
    previous: tuple[str, str] | None = None
    for message_id in have:  # Stream's order: the database's times never go back along it
        wanted = want.get(message_id)
        if wanted is None:
            continue
        if previous is not None and instant(wanted) < previous[1]:
            found.append(
                (
                    "order",
                    f"{message_id} before {previous[0]}",
                    f"{message_id} after {previous[0]}",
                )
            )
            break
        previous = (message_id, instant(wanted))
    return found


def compare_reads(*, want: Mapping[str, str | None], have: Mapping[str, str | None]) -> list[Found]:
    found: list[Found] = []
    for user_id, wanted in sorted(want.items()):
        if wanted is None or (user_id in have and have[user_id] is None):
            continue  # nothing to compare: unread in the database, or read in Stream since
        held = have.get(user_id)
        if held is None or instant(held) != instant(wanted):
            found.append((f"last_read of {user_id}", wanted, "-" if held is None else held))
    return found


def instant(moment: str | datetime) -> str:
    """A time as both sides can compare it: UTC, to the millisecond (Stream keeps no more)."""
    if isinstance(moment, str):
        try:
            parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            return moment
        moment = parsed
    moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def held_read(last_read: object, watermark: datetime | None) -> str | None:
    """A member's ``last_read`` as Stream holds it; None when Stream moved it on after the
    watermark (read in Stream since: not the database's to say)."""
    if not last_read:
        return None
    held = instant(str(last_read))
    return None if watermark is not None and held > instant(watermark) else held


@dataclass(frozen=True)
class Wanted:
    """A message as the database has it: its Stream id, its time (:func:`instant`; None
    for a message without one) and the time Stream must hold (None: not compared)."""

    id: str
    at: str | None
    kept: str | None = None


def walk_history(want: Iterable[Wanted], have: Iterable[tuple[str, str]]) -> Iterator[Found]:
    """What :func:`compare_history` finds, both sides read newest first, a page at a time.

    ``want`` is the database's messages, undated ones first, then newest first;
    ``have`` Stream's ``(id, created_at)``, newest first. Before each of Stream's
    messages, the database's are read down to its time, so a message matches as soon
    as both sides reached it: what is held between is a page and the messages whose
    times differ (those sent live, later in Stream), not the history. A message Stream
    lists before the database's walk reached it (sent live, or at another time) has its
    time compared but not its order.
    """
    walk = _Walk(iter(want))
    for message_id, created_at in have:
        yield from walk.pull(instant(created_at))
        yield from walk.see(message_id, created_at)
    yield from walk.pull("")  # the rest of the database's
    yield from ((f"message {mid}", "present", "missing") for mid in walk.ahead)
    yield from ((f"message {mid}", "missing", "present") for mid in walk.early)


class _Walk:
    """The state of :func:`walk_history`: the database's messages read but not yet seen
    in Stream (``ahead``), Stream's seen before the database's walk reached them
    (``early``), and the last message whose order was checked."""

    def __init__(self, want: Iterator[Wanted]) -> None:
        self._want = want
        self._next = next(want, None)
        self.ahead: dict[str, Wanted] = {}
        self.early: dict[str, str] = {}
        self._previous: tuple[str, str] | None = None
        self._disordered = False

    def pull(self, down_to: str) -> Iterator[Found]:
        """Read the database's messages at ``down_to`` or later (undated ones first)."""
        while self._next is not None and (self._next.at is None or self._next.at >= down_to):
            wanted, self._next = self._next, next(self._want, None)
            held = self.early.pop(wanted.id, None)
            if held is None:
                self.ahead[wanted.id] = wanted
            else:
                yield from _times(wanted, held)

    def see(self, message_id: str, created_at: str) -> Iterator[Found]:
        """One of Stream's messages, in Stream's order (newest first)."""
        wanted = self.ahead.pop(message_id, None)
        if wanted is None:
            self.early[message_id] = created_at
            return
        yield from _times(wanted, created_at)
        if wanted.kept is None:
            return
        previous, self._previous = self._previous, (message_id, wanted.kept)
        if previous is not None and not self._disordered and wanted.kept > previous[1]:
            self._disordered = True  # the first only, as compare_history names it
            later = previous[0]
            yield ("order", f"{later} before {message_id}", f"{later} after {message_id}")


def _times(wanted: Wanted, held: str) -> Iterator[Found]:
    if wanted.kept is not None and instant(held) != wanted.kept:
        yield (f"created_at of {wanted.id}", wanted.kept, held)
