"""Pure decisions of capture: which outbox rows a model change calls for."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "EVENT_KIND",
    "READS_KEY",
    "READS_ONLY",
    "READ_EVENT",
    "Change",
    "Rule",
    "Target",
    "merge_changes",
    "merge_payloads",
]

# Changes to an event fan out to the conversations of its invitations and
# proposals (their channel name comes from the event); the fan-out needs a query.
EVENT_KIND = "event"
# A participant's read time changed: the conversation's row carries who read
# (``{"reads": [user_id, ...]}``); its channel is marked read for them, and its
# members are not reconciled for it (an event of its own, which any other yields to).
READ_EVENT = "read"
READS_KEY = "reads"
# A job's mark of a conversation whose rows are all reads: its members are left alone.
READS_ONLY = "reads_only"


# Named tuples rather than frozen dataclasses: capture builds one per changed row
# inside the app's flush, and tuples are several times cheaper to create.
class Target(NamedTuple):
    """Something in Stream to reconcile: a user, a conversation or a message."""

    kind: str
    id: str


class Change(NamedTuple):
    """One outbox row to write: the target, why, and what to keep once the source is gone."""

    target: Target
    event: str
    payload: Mapping[str, Any] = {}  # never mutated: changes build new payloads


@dataclass(frozen=True)
class Rule:
    """How rows of one model map to targets.

    ``key`` names the attribute that holds the target's id; ``watched`` names the
    attributes whose change matters to Stream (inserts and deletes always matter);
    ``payload`` names attributes copied into the row's payload, each under its name in
    ``payload_keys`` (default: its own); ``deleted`` names the soft-delete mark: an
    update that sets it is a deletion, one that clears it a restore. ``owns_target`` is
    false for rows that only feed a target (a user's photo): their deletion updates it.
    """

    kind: str
    key: str
    watched: frozenset[str]
    payload: tuple[str, ...] = ()
    deleted: str | None = None
    payload_keys: tuple[str, ...] = ()
    owns_target: bool = True
    read: str | None = None
    reader: str | None = None

    @property
    def _payload_items(self) -> zip[tuple[str, str]]:
        return zip(self.payload_keys or self.payload, self.payload, strict=True)

    def update_event(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
        """``delete`` for an update that sets the soft-delete mark, ``restore`` for one that
        clears it, else ``update``."""
        mark = self.deleted
        if mark is not None and (old.get(mark) is None) != (new.get(mark) is None):
            return "delete" if old.get(mark) is None else "restore"
        return "update"

    def delete_event(self) -> str:
        """The event of a row's deletion: ``delete``, or ``update`` for a row that only
        feeds its target."""
        return "delete" if self.owns_target else "update"

    @property
    def names(self) -> tuple[str, ...]:
        """The attributes a change needs: the key, the payload's and the soft-delete mark."""
        return (self.key, *self.payload, *((self.deleted,) if self.deleted else ()))

    @property
    def read_names(self) -> tuple[str, ...]:
        """The attributes a read change needs (none when the rule has no read time)."""
        if self.read is None or self.reader is None:
            return ()
        return (self.key, self.reader, self.read)

    def read_change(self, values: Mapping[str, Any]) -> Change | None:
        """The read change of a row whose read time changed to ``values`` (None when it
        was cleared: Stream's read state is not taken back)."""
        if self.read is None or self.reader is None or values.get(self.read) is None:
            return None
        key, reader = values.get(self.key), values.get(self.reader)
        if key is None or reader is None:
            return None
        return Change(Target(self.kind, str(key)), READ_EVENT, {READS_KEY: [str(reader)]})

    def targets(self, values: Mapping[str, Any]) -> list[Target]:
        """Targets named by one version (old or new) of a row's values."""
        value = values.get(self.key)
        return [] if value is None else [Target(self.kind, str(value))]

    def change(self, event: str, target: Any) -> Change | None:
        """The change for one inserted or deleted row (fast path of :meth:`changes`)."""
        value = getattr(target, self.key)
        if value is None:
            return None
        payload = {key: _json(getattr(target, name)) for key, name in self._payload_items}
        return Change(Target(self.kind, str(value)), event, payload)

    def changes(self, event: str, *versions: Mapping[str, Any]) -> list[Change]:
        """Changes for a row event, given the row's old and/or new values."""
        found: dict[Target, Change] = {}
        for values in versions:
            payload = {key: _json(values.get(name)) for key, name in self._payload_items}
            for target in self.targets(values):
                found.setdefault(target, Change(target, event, payload))
        return list(found.values())


def _json(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def merge_payloads(first: Mapping[str, Any], then: Mapping[str, Any]) -> dict[str, Any]:
    """Two payloads of one target as one: ``then``'s keys win, but who read is the union
    of both's ``reads``."""
    merged = {**first, **then}
    if READS_KEY in first and READS_KEY in then:
        merged[READS_KEY] = sorted({*first[READS_KEY], *then[READS_KEY]})
    return merged


def merge_changes(changes: Iterable[Change]) -> list[Change]:
    """One change per target: a delete wins over other events, any other over a read;
    payloads merge (:func:`merge_payloads`)."""
    merged: dict[Target, Change] = {}
    for change in changes:
        seen = merged.get(change.target)
        if seen is None:
            merged[change.target] = change
            continue
        event = seen.event
        if "delete" in (seen.event, change.event):
            event = "delete"
        elif seen.event == READ_EVENT:
            event = change.event
        payload = merge_payloads(seen.payload, change.payload)
        merged[change.target] = Change(change.target, event, payload)
    return sorted(merged.values(), key=lambda change: change.target)
