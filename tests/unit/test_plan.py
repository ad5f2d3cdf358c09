"""Pure decisions of the worker: what a channel needs, and how claimed rows become jobs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_outbox.app_hooks.binding import DesiredChannel
from stream_outbox.app_hooks.channel_ids import ChannelFacts
from stream_outbox.worker.pipeline.jobs import Job, job_targets, plan_jobs
from stream_outbox.worker.store.repository import OutboxRow
from stream_outbox.worker.sync.plan import OWNED_CHANNEL_FIELDS, ChannelPlan, plan_channel


def desired(members: tuple[str, ...] = (), **data: Any) -> DesiredChannel:
    """A desired channel of conversation ``c1`` with these members and data."""
    return DesiredChannel(
        conversation_id="c1",
        facts=ChannelFacts("c1", member_ids=members),
        members=members,
        data=data,
        created_by=members[0] if members else None,
    )


def row(row_id: int, kind: str, target: str, payload: dict[str, Any] | None = None) -> OutboxRow:
    return OutboxRow(row_id, kind, target, "upsert", payload or {})


# -- plan_channel ---------------------------------------------------------------------


def test_members_to_add_and_remove_are_sorted() -> None:
    # Given a channel that should hold d, b, a while Stream holds c, a, e
    channel = desired(("d", "b", "a"))

    # When planning
    plan = plan_channel(channel, ["e", "a", "c"], {})

    # Then the missing members are added and the extra ones removed, both sorted
    assert plan.add == ("b", "d")
    assert plan.remove == ("c", "e")
    assert not plan.empty


def test_owned_fields_that_differ_are_set() -> None:
    # Given a renamed event: the desired name differs, the conversation id does not
    channel = desired(("a",), conversation_id="c1", name="New title", event_id="e1")
    remote = {"conversation_id": "c1", "name": "Old title", "event_id": "e1"}

    # When planning
    plan = plan_channel(channel, ["a"], remote)

    # Then only the changed owned field is set
    assert plan.set_data == {"name": "New title"}
    assert plan.unset_data == ()
    assert (plan.add, plan.remove) == ((), ())


def test_owned_fields_missing_remotely_are_set() -> None:
    # Given a channel Stream holds without any of our fields
    channel = desired(("a",), conversation_id="c1", name="Launch", event_id="e1")

    # When planning against bare data
    plan = plan_channel(channel, ["a"], {})

    # Then every owned field is set
    assert plan.set_data == {"conversation_id": "c1", "name": "Launch", "event_id": "e1"}


def test_owned_fields_present_remotely_but_not_desired_are_unset() -> None:
    # Given a conversation that lost its invitation: no name or event any more
    channel = desired(("a",), conversation_id="c1")
    remote = {"conversation_id": "c1", "name": "Launch", "event_id": "e1"}

    # When planning
    plan = plan_channel(channel, ["a"], remote)

    # Then the stale owned fields are unset, in the order of OWNED_CHANNEL_FIELDS
    assert plan.unset_data == ("name", "event_id")
    assert plan.set_data == {}
    assert set(plan.unset_data) <= set(OWNED_CHANNEL_FIELDS)


def test_fields_we_do_not_own_are_left_alone() -> None:
    # Given desired data with a field we do not own, and remote fields set by others
    channel = desired(("a",), conversation_id="c1", color="red")
    remote = {
        "conversation_id": "c1",
        "color": "blue",
        "frozen": True,
        "created_by": {"id": "a"},
        "member_count": 1,
    }

    # When planning
    plan = plan_channel(channel, ["a"], remote)

    # Then nothing is set nor unset
    assert plan.set_data == {}
    assert plan.unset_data == ()
    assert plan.empty


def test_a_channel_in_step_needs_an_empty_plan() -> None:
    # Given a channel Stream already holds exactly as desired
    channel = desired(("a", "b"), conversation_id="c1", name="Launch", event_id="e1")
    remote = {"conversation_id": "c1", "name": "Launch", "event_id": "e1", "type": "messaging"}

    # When planning (members in any order)
    plan = plan_channel(channel, iter(["b", "a"]), remote)

    # Then there is nothing to do
    assert plan == ChannelPlan()
    assert plan.empty


@pytest.mark.parametrize(
    "plan",
    [
        ChannelPlan(set_data={"name": "x"}),
        ChannelPlan(unset_data=("name",)),
        ChannelPlan(add=("a",)),
        ChannelPlan(remove=("a",)),
    ],
)
def test_any_single_change_makes_a_plan_non_empty(plan: ChannelPlan) -> None:
    assert not plan.empty


# -- plan_jobs ------------------------------------------------------------------------


def test_no_rows_make_no_jobs() -> None:
    assert plan_jobs([]) == []


def test_a_burst_to_one_conversation_makes_one_job_with_merged_payload() -> None:
    # Given several rows for one conversation, the later one naming its channel
    rows = [
        row(1, "conversation", "c1"),
        row(2, "conversation", "c1", {"legacy": True, "channel_type": "old"}),
        row(3, "conversation", "c1", {"channel_type": "messaging", "channel_id": "invitation_9"}),
    ]

    # When planning jobs
    jobs = plan_jobs(rows)

    # Then one job carries every row, and later payload keys win
    merged = {"legacy": True, "channel_type": "messaging", "channel_id": "invitation_9"}
    assert jobs == [
        Job(
            "conversation",
            ("c1",),
            (1, 2, 3),
            {"rows": {"c1": [1, 2, 3]}, "payloads": {"c1": merged}},
        )
    ]


def test_a_row_without_payload_counts_as_an_empty_payload() -> None:
    # Given rows as the database may hand them (a NULL payload)
    rows = [
        SimpleNamespace(id=1, target_kind="conversation", target_id="c1", payload=None),
        SimpleNamespace(id=2, target_kind="conversation", target_id="c1", payload={"a": 1}),
    ]

    # When planning, Then the payloads merge around the missing one
    assert plan_jobs(rows) == [
        Job("conversation", ("c1",), (1, 2), {"rows": {"c1": [1, 2]}, "payloads": {"c1": {"a": 1}}})
    ]


def test_users_are_batched_with_a_map_of_their_rows() -> None:
    # Given five users, the first with two rows, and batches of two
    rows = [
        row(1, "user", "u1"),
        row(2, "user", "u2"),
        row(3, "user", "u3"),
        row(4, "user", "u1"),
        row(5, "user", "u4"),
        row(6, "user", "u5"),
    ]

    # When planning jobs
    jobs = plan_jobs(rows, users_per_job=2)

    # Then users come in batches of at most two, in order of first appearance
    assert [job.kind for job in jobs] == ["user", "user", "user"]
    assert [job.target_ids for job in jobs] == [("u1", "u2"), ("u3", "u4"), ("u5",)]
    # And each batch carries its rows and which user each row belongs to
    assert jobs[0].row_ids == (1, 4, 2)
    assert jobs[0].payload == {"rows": {"u1": [1, 4], "u2": [2]}}
    assert jobs[1].payload == {"rows": {"u3": [3], "u4": [5]}}
    assert jobs[2] == Job("user", ("u5",), (6,), {"rows": {"u5": [6]}})


def test_users_fit_in_one_job_by_default() -> None:
    # Given 100 users (the default batch size)
    rows = [row(i, "user", f"u{i}") for i in range(1, 101)]

    # When planning, Then one job takes them all and a 101st user starts another
    assert len(plan_jobs(rows)) == 1
    assert len(plan_jobs([*rows, row(101, "user", "u101")])) == 2


def test_messages_make_one_job_each() -> None:
    # Given two messages, one of them changed twice
    rows = [
        row(1, "message", "m1", {"conversation_id": "c1"}),
        row(2, "message", "m2", {"conversation_id": "c1"}),
        row(3, "message", "m1", {"conversation_id": "c2"}),
    ]

    # When planning jobs
    jobs = plan_jobs(rows)

    # Then each message gets a job of its own with all its rows
    assert jobs == [
        Job("message", ("m1",), (1, 3), {"conversation_id": "c2"}),
        Job("message", ("m2",), (2,), {"conversation_id": "c1"}),
    ]


def test_a_message_whose_rows_are_all_edits_is_marked_an_edit() -> None:
    # Given a message edited twice, and one sent then edited
    rows = [
        OutboxRow(1, "message", "m1", "update", {"conversation_id": "c1"}),
        OutboxRow(2, "message", "m1", "update", {"conversation_id": "c1"}),
        OutboxRow(3, "message", "m2", "insert", {"conversation_id": "c1"}),
        OutboxRow(4, "message", "m2", "update", {"conversation_id": "c1"}),
    ]

    # When planning jobs, Then only the first is an edit (its text set first)
    assert [job.payload.get("edit", False) for job in plan_jobs(rows)] == [True, False]


def test_a_message_restored_from_its_soft_delete_is_marked_a_restore() -> None:
    # Given a message restored then edited, one deleted then restored, and one sent,
    # deleted and restored before its job ran
    rows = [
        OutboxRow(1, "message", "m1", "restore", {"conversation_id": "c1"}),
        OutboxRow(2, "message", "m1", "update", {"conversation_id": "c1"}),
        OutboxRow(3, "message", "m2", "delete", {"conversation_id": "c1"}),
        OutboxRow(4, "message", "m2", "restore", {"conversation_id": "c1"}),
        OutboxRow(5, "message", "m3", "insert", {"conversation_id": "c1"}),
        OutboxRow(6, "message", "m3", "delete", {"conversation_id": "c1"}),
        OutboxRow(7, "message", "m3", "restore", {"conversation_id": "c1"}),
    ]

    # When planning jobs, Then the first two undelete first; the last (new) is sent
    jobs = plan_jobs(rows)
    assert [job.payload.get("restore", False) for job in jobs] == [True, True, False]
    assert not any(job.payload.get("edit") for job in jobs)


def test_a_mixed_batch_groups_by_target_and_kind() -> None:
    # Given rows of every kind, interleaved; "x" is both a user id and a conversation id
    rows = [
        row(1, "user", "x"),
        row(2, "conversation", "x"),
        row(3, "message", "m1"),
        row(4, "user", "u2"),
        row(5, "conversation", "c2"),
        row(6, "conversation", "x", {"channel_id": "invitation_1"}),
        row(7, "user", "x"),
    ]

    # When planning jobs
    jobs = plan_jobs(rows)

    # Then messages come first, one per target, then conversations, then users, in batches
    assert jobs == [
        Job("message", ("m1",), (3,), {}),
        Job(
            "conversation",
            ("x", "c2"),
            (2, 6, 5),
            {"rows": {"x": [2, 6], "c2": [5]}, "payloads": {"x": {"channel_id": "invitation_1"}}},
        ),
        Job("user", ("x", "u2"), (1, 7, 4), {"rows": {"x": [1, 7], "u2": [4]}}),
    ]


def test_conversations_are_batched_but_a_history_import_runs_alone() -> None:
    # Given three conversations, the second asking for its history, and batches of two
    rows = [
        row(1, "conversation", "c1"),
        row(2, "conversation", "c2", {"history": True}),
        row(3, "conversation", "c3"),
        row(4, "conversation", "c4"),
        row(5, "conversation", "c2"),
    ]

    # When planning jobs
    jobs = plan_jobs(rows, conversations_per_job=2)

    # Then the history import is a job of its own (a long one), the others come in twos
    assert [job.target_ids for job in jobs] == [("c2",), ("c1", "c3"), ("c4",)]
    assert jobs[0].payload == {"rows": {"c2": [2, 5]}, "payloads": {"c2": {"history": True}}}
    assert jobs[1].payload == {"rows": {"c1": [1], "c3": [3]}, "payloads": {}}


def test_job_targets_reads_batches_and_single_conversation_jobs() -> None:
    # Given a batch job, and a job in the one-conversation shape (older releases, by hand)
    batch = {"rows": {"c1": [1, 2], "c2": [3]}, "payloads": {"c2": {"legacy": True}}}
    single = {"channel_id": "dm_x"}

    # When reading their targets
    # Then each target has its rows and payload
    assert job_targets(["c1", "c2"], [1, 2, 3], batch) == {
        "c1": ([1, 2], {}),
        "c2": ([3], {"legacy": True}),
    }
    assert job_targets(["c1"], [7, 8], single) == {"c1": ([7, 8], {"channel_id": "dm_x"})}
    assert job_targets([], [], {}) == {}


KINDS = st.sampled_from(["user", "conversation", "message"])
TARGETS = st.sampled_from(["a", "b", "c", "d", "e", "f"])


@given(
    targets=st.lists(st.tuples(KINDS, TARGETS), max_size=40),
    users_per_job=st.integers(min_value=1, max_value=4),
    conversations_per_job=st.integers(min_value=1, max_value=4),
)
def test_every_row_lands_in_exactly_one_job(
    targets: list[tuple[str, str]], users_per_job: int, conversations_per_job: int
) -> None:
    # Given any claimed rows
    rows = [row(i, kind, target) for i, (kind, target) in enumerate(targets, start=1)]

    # When planning jobs
    jobs = plan_jobs(rows, users_per_job, conversations_per_job)

    # Then every row is in exactly one job, with a job of its own kind and target
    placed = [row_id for job in jobs for row_id in job.row_ids]
    assert sorted(placed) == [r.id for r in rows]
    by_id = {r.id: r for r in rows}
    for job in jobs:
        assert len(set(job.target_ids)) == len(job.target_ids)
        for row_id in job.row_ids:
            assert by_id[row_id].target_kind == job.kind
            assert by_id[row_id].target_id in job.target_ids
        batch = {"user": users_per_job, "conversation": conversations_per_job}.get(job.kind)
        if batch is not None:
            assert 1 <= len(job.target_ids) <= batch
            assert sorted(r for ids in job.payload["rows"].values() for r in ids) == sorted(
                job.row_ids
            )
        else:
            assert len(job.target_ids) == 1


def test_a_conversation_whose_rows_are_all_reads_marks_reads_only_with_every_reader() -> None:
    rows = [
        OutboxRow(1, "conversation", "c1", "read", {"reads": ["u2"]}),
        OutboxRow(2, "conversation", "c1", "read", {"reads": ["u1", "u2"]}),
        OutboxRow(3, "conversation", "c2", "read", {"reads": ["u1"]}),
        OutboxRow(4, "conversation", "c2", "insert", {}),
        # a row written again later (a recheck) carries the mark it was written with
        OutboxRow(5, "conversation", "c3", "recheck", {"reads": ["u3"], "reads_only": True}),
    ]
    [job] = plan_jobs(rows)
    assert job.payload["payloads"] == {
        "c1": {"reads": ["u1", "u2"], "reads_only": True},
        "c2": {"reads": ["u1"]},
        "c3": {"reads": ["u3"], "see_stream": True},
    }
