"""Which outbox rows a model change calls for (pure decisions of capture)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from typing import Any

import pytest

from stream_outbox.app_hooks.changes import EVENT_KIND, Change, Rule, Target, merge_changes

MESSAGE_RULE = Rule(
    "message", "id", frozenset({"id", "conversation_id"}), payload=("conversation_id",)
)
USER_RULE = Rule("user", "user_id", frozenset({"user_id", "full_name"}))

MESSAGE_ID = uuid.UUID(int=10)
OLD_CONVERSATION = uuid.UUID(int=20)
NEW_CONVERSATION = uuid.UUID(int=21)


# -- Rule.targets ---------------------------------------------------------------------


def test_target_is_the_key_as_a_string() -> None:
    assert USER_RULE.targets({"user_id": 7}) == [Target("user", "7")]
    assert MESSAGE_RULE.targets({"id": MESSAGE_ID}) == [Target("message", str(MESSAGE_ID))]


def test_no_key_value_means_no_target() -> None:
    assert USER_RULE.targets({"user_id": None}) == []
    assert USER_RULE.targets({}) == []
    assert USER_RULE.targets({"id": 7}) == []


@pytest.mark.parametrize("falsy", [0, "", False])
def test_a_falsy_key_is_still_a_target(falsy: Any) -> None:
    assert USER_RULE.targets({"user_id": falsy}) == [Target("user", str(falsy))]


def test_targets_order_by_kind_then_id() -> None:
    assert sorted([Target("user", "2"), Target("conversation", "9"), Target("user", "1")]) == [
        Target("conversation", "9"),
        Target("user", "1"),
        Target("user", "2"),
    ]


def test_event_kind_is_named() -> None:
    assert EVENT_KIND == "event"


# -- Rule.changes ---------------------------------------------------------------------


def test_insert_gives_one_change_with_its_payload() -> None:
    # Given a new message row
    new = {"id": MESSAGE_ID, "conversation_id": NEW_CONVERSATION, "content": "hi"}
    # When the rule maps the insert
    changes = MESSAGE_RULE.changes("insert", new)
    # Then one change carries the watched payload, JSON-safe
    assert changes == [
        Change(
            Target("message", str(MESSAGE_ID)),
            "insert",
            {"conversation_id": str(NEW_CONVERSATION)},
        )
    ]


def test_old_and_new_versions_with_other_keys_give_two_targets() -> None:
    # Given a participant moved from one user to another
    old, new = {"user_id": 1}, {"user_id": 2}
    changes = USER_RULE.changes("update", old, new)
    assert [change.target for change in changes] == [Target("user", "1"), Target("user", "2")]
    assert all(change.event == "update" for change in changes)


def test_each_version_keeps_its_own_payload() -> None:
    rule = Rule("conversation", "conversation_id", frozenset(), payload=("event_id",))
    old = {"conversation_id": "c1", "event_id": "e1"}
    new = {"conversation_id": "c2", "event_id": "e2"}
    assert rule.changes("update", old, new) == [
        Change(Target("conversation", "c1"), "update", {"event_id": "e1"}),
        Change(Target("conversation", "c2"), "update", {"event_id": "e2"}),
    ]


def test_old_and_new_versions_with_the_same_key_give_one_target() -> None:
    old = {"id": MESSAGE_ID, "conversation_id": OLD_CONVERSATION}
    new = {"id": MESSAGE_ID, "conversation_id": NEW_CONVERSATION}
    changes = MESSAGE_RULE.changes("update", old, new)
    assert len(changes) == 1
    assert changes[0].target == Target("message", str(MESSAGE_ID))
    # The first version given names the payload.
    assert changes[0].payload == {"conversation_id": str(OLD_CONVERSATION)}


def test_a_version_without_key_adds_no_target() -> None:
    changes = USER_RULE.changes("update", {"user_id": None}, {"user_id": 3})
    assert [change.target for change in changes] == [Target("user", "3")]


def test_no_versions_or_no_keys_give_no_changes() -> None:
    assert USER_RULE.changes("delete") == []
    assert USER_RULE.changes("delete", {}, {"user_id": None}) == []


def test_missing_payload_attribute_is_none() -> None:
    changes = MESSAGE_RULE.changes("delete", {"id": 5})
    assert changes[0].payload == {"conversation_id": None}


def test_rule_without_payload_names_gives_empty_payload() -> None:
    changes = USER_RULE.changes("insert", {"user_id": 1, "full_name": "Ann"})
    assert changes[0].payload == {}


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, True),
        (False, False),
        (3, 3),
        (2.5, 2.5),
        ("text", "text"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (decimal.Decimal("1.10"), "1.10"),
        (dt.date(2024, 2, 29), "2024-02-29"),
        (
            dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
            str(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)),
        ),
        (Opaque(), "opaque!"),
    ],
    ids=[
        "none",
        "true",
        "false",
        "int",
        "float",
        "str",
        "uuid",
        "decimal",
        "date",
        "datetime",
        "object",
    ],
)
def test_payload_values_become_json_safe(value: Any, expected: Any) -> None:
    rule = Rule("message", "id", frozenset(), payload=("value",))
    (change,) = rule.changes("insert", {"id": 1, "value": value})
    assert change.payload == {"value": expected}
    assert type(change.payload["value"]) is type(expected)
    assert json.loads(json.dumps(dict(change.payload))) == {"value": expected}


def test_changes_are_frozen() -> None:
    (change,) = USER_RULE.changes("insert", {"user_id": 1})
    with pytest.raises(AttributeError):
        change.event = "delete"  # type: ignore[misc]


# -- merge_changes --------------------------------------------------------------------


def change(kind: str, target_id: str, event: str, **payload: Any) -> Change:
    return Change(Target(kind, target_id), event, payload)


def test_merge_of_nothing_is_nothing() -> None:
    assert merge_changes([]) == []


def test_merge_keeps_one_change_per_target() -> None:
    merged = merge_changes(
        [
            change("user", "1", "insert"),
            change("user", "1", "update"),
            change("user", "2", "update"),
            change("user", "1", "update"),
        ]
    )
    assert [c.target for c in merged] == [Target("user", "1"), Target("user", "2")]


@pytest.mark.parametrize(
    "events",
    [
        ("insert", "delete"),
        ("delete", "insert"),
        ("update", "delete", "update"),
        ("delete", "delete"),
    ],
)
def test_delete_wins_whatever_the_order(events: tuple[str, ...]) -> None:
    merged = merge_changes([change("message", "m", event) for event in events])
    assert merged == [change("message", "m", "delete")]


def test_without_delete_the_first_event_stays() -> None:
    merged = merge_changes([change("user", "1", "insert"), change("user", "1", "update")])
    assert merged == [change("user", "1", "insert")]
    merged = merge_changes([change("user", "1", "update"), change("user", "1", "insert")])
    assert merged == [change("user", "1", "update")]


def test_payloads_merge_and_later_values_win() -> None:
    merged = merge_changes(
        [
            change("message", "m", "update", conversation_id="c1", a=1),
            change("message", "m", "delete", conversation_id="c2", b=2),
        ]
    )
    assert merged == [change("message", "m", "delete", conversation_id="c2", a=1, b=2)]


def test_merge_does_not_mutate_the_inputs() -> None:
    first = change("message", "m", "update", a=1)
    second = change("message", "m", "update", b=2)
    merge_changes([first, second])
    assert first.payload == {"a": 1}
    assert second.payload == {"b": 2}


def test_merge_sorts_by_kind_then_id() -> None:
    merged = merge_changes(
        [
            change("user", "b", "update"),
            change("conversation", "z", "insert"),
            change("user", "a", "insert"),
            change("message", "m", "delete"),
            change("conversation", "a", "update"),
        ]
    )
    assert [(c.target.kind, c.target.id) for c in merged] == [
        ("conversation", "a"),
        ("conversation", "z"),
        ("message", "m"),
        ("user", "a"),
        ("user", "b"),
    ]


def test_ids_sort_as_strings() -> None:
    merged = merge_changes([change("user", "10", "insert"), change("user", "9", "insert")])
    assert [c.target.id for c in merged] == ["10", "9"]


def test_merge_accepts_a_generator_of_rule_changes() -> None:
    # Given a message moved between conversations, then deleted, in one transaction
    old = {"id": MESSAGE_ID, "conversation_id": OLD_CONVERSATION}
    new = {"id": MESSAGE_ID, "conversation_id": NEW_CONVERSATION}
    batches = [MESSAGE_RULE.changes("update", old, new), MESSAGE_RULE.changes("delete", new)]
    # When merged
    merged = merge_changes(c for batch in batches for c in batch)
    # Then one delete remains, with the latest conversation
    assert merged == [
        Change(
            Target("message", str(MESSAGE_ID)),
            "delete",
            {"conversation_id": str(NEW_CONVERSATION)},
        )
    ]


# -- read times -----------------------------------------------------------------------

PARTICIPANT_RULE = Rule(
    "conversation",
    "conversation_id",
    frozenset({"conversation_id", "user_id"}),
    read="last_read_at",
    reader="user_id",
)


def test_a_read_time_set_is_a_read_of_the_conversation_naming_who_read() -> None:
    values = {"conversation_id": "c", "user_id": 7, "last_read_at": dt.datetime(2026, 1, 1)}
    assert PARTICIPANT_RULE.read_change(values) == Change(
        Target("conversation", "c"), "read", {"reads": ["7"]}
    )


def test_a_read_time_cleared_or_a_rule_without_one_reads_nothing() -> None:
    assert PARTICIPANT_RULE.read_change({"conversation_id": "c", "user_id": 7}) is None
    assert USER_RULE.read_change({"user_id": "u", "last_read_at": dt.datetime(2026, 1, 1)}) is None
    assert USER_RULE.read_names == ()


def test_readers_merge_into_one_change_and_any_other_event_wins_over_a_read() -> None:
    merged = merge_changes(
        [
            change("conversation", "c", "read", reads=["b"]),
            change("conversation", "c", "read", reads=["a", "b"]),
            change("conversation", "c", "update"),
        ]
    )
    assert merged == [change("conversation", "c", "update", reads=["a", "b"])]
    merged = merge_changes(
        [change("conversation", "c", "insert"), change("conversation", "c", "read", reads=["a"])]
    )
    assert merged == [change("conversation", "c", "insert", reads=["a"])]
    merged = merge_changes(
        [change("conversation", "c", "read", reads=["a"]), change("conversation", "c", "delete")]
    )
    assert merged == [change("conversation", "c", "delete", reads=["a"])]
