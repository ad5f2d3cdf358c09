"""Failures grouped by cause: how ``last_error`` reads as a cause, and the groups (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stream_outbox.worker.error_groups import (
    Cause,
    FailedRow,
    cause_of,
    find_group,
    group_failures,
)
from stream_outbox.worker.errors import AdminError

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def failed(row_id: int, error: str | None, minutes: int = 0, kind: str = "user") -> FailedRow:
    return FailedRow(row_id, kind, f"{kind[0]}{row_id}", error, T0 + timedelta(minutes=minutes))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            "after 5 attempts: GetOrCreateChannel HTTP 429 code 9: Too many requests",
            Cause("GetOrCreateChannel", 429, "9", "Too many requests"),
        ),
        (
            "UpdateUsers HTTP 400 code 4: user 17 name is too long (max 100)",
            Cause("UpdateUsers", 400, "4", "user <n> name is too long (max <n>)"),
        ),
        (
            "SendMessage HTTP 400 code 4: message 3f2a9c1e-1b2c-4d5e-8f90-123456789abc exists",
            Cause("SendMessage", 400, "4", "message <id> exists"),
        ),
        (
            "after 11 attempts: UpdateUsers HTTP 503: unavailable",
            Cause("UpdateUsers", 503, None, "unavailable"),
        ),
        (
            "GetOrCreateChannel: channel messaging:conv-42 is frozen",
            Cause("GetOrCreateChannel", None, None, "channel <id> is frozen"),
        ),
        (
            "BadSourceData: user u981 has no e-mail",
            Cause("BadSourceData", None, None, "user <id> has no e-mail"),
        ),
        (
            "payload is not a JSON object but a list: fix it, then replay",
            Cause("", None, None, "payload is not a JSON object but a list: fix it, then replay"),
        ),
        (None, Cause("", None, None, "no error recorded")),
        ("  ", Cause("", None, None, "no error recorded")),
    ],
)
def test_a_last_error_reads_as_endpoint_status_code_and_normalised_text(
    error: str | None, expected: Cause
) -> None:
    assert cause_of(error) == expected


def test_ids_numbers_and_attempts_do_not_split_a_cause() -> None:
    # Given errors that differ only in ids, numbers and the attempts they took
    errors = [
        "after 5 attempts: UpdateUsers HTTP 400 code 4: user 17 name is too long",
        "after 3 attempts: UpdateUsers HTTP 400 code 4: user 2093 name is too long",
        "UpdateUsers HTTP 400 code 4: user  5  name is too long",
    ]
    # Then they share one cause and one key
    assert len({cause_of(e) for e in errors}) == 1
    assert len({cause_of(e).key for e in errors}) == 1


@pytest.mark.parametrize(
    "other",
    [
        "UpdateUsers HTTP 400 code 5: user 17 name is too long",  # another code
        "UpdateUsers HTTP 429 code 4: user 17 name is too long",  # another status
        "GetOrCreateChannel HTTP 400 code 4: user 17 name is too long",  # another endpoint
        "UpdateUsers HTTP 400 code 4: user 17 is deactivated",  # another text
    ],
)
def test_endpoint_status_code_and_text_each_make_another_cause(other: str) -> None:
    base = cause_of("UpdateUsers HTTP 400 code 4: user 17 name is too long")
    assert cause_of(other) != base and cause_of(other).key != base.key


def test_a_cause_reads_back_as_one_line() -> None:
    cause = cause_of("after 5 attempts: GetOrCreateChannel HTTP 429 code 9: 12 calls too many")
    assert str(cause) == "GetOrCreateChannel HTTP 429 code 9: <n> calls too many"
    assert str(cause_of("something broke")) == "something broke"
    assert len(cause.key) == 12 and cause.key == cause_of(str(cause)).key


def test_groups_count_time_kinds_samples_and_ids_largest_first() -> None:
    # Given failed rows of two causes, in no order
    limited = "after 5 attempts: GetOrCreateChannel HTTP 429 code 9: Too many requests"
    too_long = "UpdateUsers HTTP 400 code 4: user {} name is too long"
    rows = [
        failed(7, too_long.format(7), minutes=3),
        failed(3, limited, minutes=5, kind="conversation"),
        failed(2, too_long.format(2), minutes=1),
        failed(9, too_long.format(9), minutes=2, kind="message"),
        failed(4, limited, minutes=4, kind="conversation"),
    ]
    # When they are grouped
    first, second = group_failures(rows)
    # Then the larger group comes first, with its span, kinds, samples and sorted ids
    assert str(first.cause) == "UpdateUsers HTTP 400 code 4: user <n> name is too long"
    assert (first.count, first.ids) == (3, [2, 7, 9])
    assert (first.first_seen, first.last_seen) == (
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=3),
    )
    assert first.kinds == {"user", "message"}
    assert sorted(first.samples) == ["message:m9", "user:u2", "user:u7"]
    assert (second.count, second.ids, second.kinds) == (2, [3, 4], {"conversation"})
    data = first.as_dict()
    assert data["key"] == first.key and data["code"] == "4" and data["status"] == 400
    assert data["first_seen"] == "2026-11-30T09:01:00+00:00" and data["kinds"] == [
        "message",
        "user",
    ]


def test_samples_are_a_few_distinct_targets() -> None:
    rows = [FailedRow(i, "user", f"u{i % 7}", "x", T0) for i in range(40)]
    [group] = group_failures(rows)
    assert group.count == 40 and len(group.samples) == 5 and len(set(group.samples)) == 5


def test_ties_go_to_the_most_recent_group() -> None:
    rows = [failed(1, "A: old", minutes=0), failed(2, "B: recent", minutes=9)]
    assert [g.cause.endpoint for g in group_failures(rows)] == ["B", "A"]
    assert group_failures([]) == []


def test_find_group_by_key_or_a_one_line_error() -> None:
    groups = group_failures([failed(1, "A: x"), failed(2, "B: y")])
    assert find_group(groups, groups[1].key) is groups[1]
    with pytest.raises(AdminError, match="no failed rows of cause 'nope'") as raised:
        find_group(groups, "nope")
    assert "\n" not in str(raised.value)
