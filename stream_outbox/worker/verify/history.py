"""The history part of the comparison, pure: messages once, at their time, in order; reads."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

__all__ = ["Found", "compare_history", "compare_reads", "held_read", "instant"]

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
