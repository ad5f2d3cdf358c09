"""Reading and validating a Stream import file (JSON Lines), without changing the store.

The format and the wording of errors come from Stream's import page,
``docs/migrating/import.md`` in GetStream/stream-chat-python ("File Format", "Data
format", "Error Messages"); the per-type rules are in ``rules``. Rules and
wording it does not give are marked inferred here and in the README.

A file is read line by line, in chunks (``read_chunks``), so that neither the file nor
its items are ever held in memory whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream_outbox.emulator.importing.rules import (
    CHECKS,
    Invalid,
    Seen,
    check_custom_size,
    check_times,
)
from stream_outbox.emulator.state.store import Store

# The documented order: users, devices, future_channel_ban, channels, members, messages,
# reactions. Each type's rank; an item may not follow an item of a higher rank.
ORDER = ("user", "device", "future_channel_ban", "channel", "member", "message", "reaction")
RANK = {item_type: rank for rank, item_type in enumerate(ORDER)}
MAX_FILE_BYTES = 300 * 1000 * 1000  # "The maximum file size supported for upload is 300 MB."
STAT_KEYS = ("users", "channels", "members", "messages", "reactions")
MAX_REPORTED_ERRORS = 1000  # inferred: the report lists the first ones, counts them all
CHUNK_LINES = 5000

Line = tuple[int, bytes]


def read_chunks(path: Path, size: int = CHUNK_LINES) -> Iterator[list[Line]]:
    """The file's lines, numbered from 1, ``size`` at a time (lines end at ``\\n``
    only: a JSON string may hold U+2028)."""
    with path.open("rb") as handle:
        chunk: list[Line] = []
        for number, raw in enumerate(handle, 1):
            chunk.append((number, raw))
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


@dataclass
class Analysis:
    """The errors that refuse a file, and the per-type counts of its valid items."""

    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAT_KEYS, 0))

    def add_error(self, error: dict[str, Any]) -> None:
        """Count an error; keep it for the report while there are few."""
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(error)

    def report(self) -> dict[str, Any]:
        """``{"errors": [...], "stats": {"total": {...}}}``, the shape Stream shows."""
        report: dict[str, Any] = {"errors": list(self.errors), "stats": {"total": dict(self.stats)}}
        if self.error_count > len(self.errors):
            report["error_count"] = self.error_count
        return report


class Analyzer:
    """Validates a file's lines in order; references may point at earlier lines or
    at the store (read while the caller holds the store's lock)."""

    def __init__(self, store: Store, channel_types: frozenset[str] | None = None) -> None:
        self.store = store
        self.channel_types = channel_types
        self.result = Analysis()
        self.seen = Seen()
        self.highest = 0

    def too_large(self, size: int, max_bytes: int) -> bool:
        """Refuse the whole file when it is over ``max_bytes`` (wording inferred)."""
        if size <= max_bytes:
            return False
        text = f"Validation error: max file size exceeded ({max_bytes} bytes)"
        self.result.add_error({"line": 0, "error": text})
        return True

    def feed(self, number: int, raw: bytes) -> None:
        """Validate one line (blank lines are skipped)."""
        if not raw.strip():
            return
        item_type, data, error = _parse_line(number, raw)
        if error is not None:
            self.result.add_error(error)
            return
        try:
            self._check_order(item_type)
            check_times(data)
            if item_type == "channel" and self.channel_types is not None:
                self._check_channel_type(data)
            key = CHECKS[item_type](data, self.store, self.seen)
            if key in self.seen.keys[item_type]:
                raise Invalid(f'duplicated {item_type} "{key}"')
            if item_type != "device" and item_type != "future_channel_ban":
                check_custom_size(item_type, data, len(raw))
        except Invalid as exc:
            self.result.add_error(
                {
                    "line": number,
                    "error": f"Validation error: {exc}",
                    "item_type": item_type,
                    "item": data,
                }
            )
            return
        self.seen.keys[item_type].add(key)
        stat = f"{item_type}s"
        if stat in self.result.stats:
            self.result.stats[stat] += 1

    def _check_order(self, item_type: str) -> None:
        rank = RANK[item_type]
        if rank < self.highest:
            raise Invalid(
                f'item of type "{item_type}" after an item of type "{ORDER[self.highest]}": '
                "items must come in the order " + ", ".join(ORDER)
            )
        self.highest = rank

    def _check_channel_type(self, data: dict[str, Any]) -> None:
        """The channel type must be one of the app's ("Some validations depend on your
        specific configuration, such as ... custom channel type configurations")."""
        channel_type = data.get("type")
        assert self.channel_types is not None
        known = self.channel_types
        if isinstance(channel_type, str) and channel_type and channel_type not in known:
            raise Invalid(f"'{channel_type}' is not a valid channel.type")  # inferred wording


def parse_item(raw: bytes) -> tuple[str, dict[str, Any]]:
    """``(type, data)`` of a line already validated."""
    obj = json.loads(raw)
    return str(obj["type"]), obj["data"]


def _parse_line(number: int, raw: bytes) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        # Stream quotes Go's decoder ("invalid character ',' looking for beginning of
        # value"); the detail here is Python's (inferred wording after "Parse error: ").
        detail = getattr(exc, "msg", None) or str(exc)
        return "", {}, {"line": number, "error": f"Parse error: {detail}"}
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), dict):
        return (
            "",
            {},
            {
                "line": number,
                "error": 'Parse error: an item must be an object with "type" and an object "data"',
            },
        )
    item_type = obj.get("type")
    if item_type not in RANK:
        return "", {}, {"line": number, "error": f'Parse error: invalid item type "{item_type}"'}
    return str(item_type), obj["data"], None
