"""Sequences that once broke convergence, replayed step by step on every run.

Each was found by the property test's search (or while reading the code for it) and
fixed in the product; the steps are those of :mod:`tests.property.test_convergence`.
The checks are the property's: the outbox drains, nothing fails, and Stream holds
what the database says.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session

from stream_outbox.app_hooks.outbox import Status
from tests.property.test_convergence import PREAMBLE, World, differences, reset, rows_by_status
from tests.support.app_model import AppModel
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.slow

# The preamble: users 0-3 (0 "Zoë Ångström" with an avatar, 1 "🎉 Party 🦄", 2 no
# profile, 3 "שלום עולם"), conversation 0 between users 0 and 1.
CASES: dict[str, list[tuple[Any, ...]]] = {
    # Every member left a synced conversation: the channel kept its last members.
    "everyone_leaves_a_synced_conversation": [
        ("settle",),
        ("txn", (("everyone_leaves", 0),)),
    ],
    "the_last_members_leave_one_by_one": [
        ("settle",),
        ("txn", (("leave", 0, 0), ("leave", 0, 0))),
    ],
    # A message in a conversation with no members: the channel id was assigned, the
    # channel never created, and the message failed with a 404.
    "a_system_message_in_an_empty_conversation": [
        ("txn", (("conversation", -1, -1, -1), ("message", 1, -1, 0))),
    ],
    "a_message_before_the_members_join": [
        ("txn", (("conversation", -1, -1, -1), ("message", 1, -1, 1)), True),
        ("settle",),
        ("txn", (("join", 1, 0), ("join", 1, 1), ("join", 1, 2))),
    ],
    # A user's deletion cascades in the database to their invitations, proposals and
    # organized events: the channels of those conversations lost their name and event.
    "the_organizer_who_left_the_conversation_is_deleted": [
        ("txn", (("invite", 2, 1, 0),)),
        ("settle",),
        ("txn", (("leave", 1, 0),)),
        ("settle",),
        ("txn", (("delete_user", 2),)),
    ],
    "the_guest_who_left_the_conversation_is_deleted": [
        ("txn", (("invite", 2, 1, 0),)),
        ("settle",),
        ("txn", (("leave", 1, 1),)),
        ("settle",),
        ("txn", (("delete_user", 1),)),
    ],
    "a_proposer_who_is_not_a_member_is_deleted": [
        ("txn", (("invite", 2, 1, 0), ("propose", 0, 3, 0))),
        ("settle",),
        ("txn", (("delete_user", 3),)),
    ],
    # A second conversation of the same two people, deleted before it was synced: its
    # delete named the channel the rules predicted (dm_...), the first conversation's.
    "a_twin_conversation_deleted_before_its_sync": [
        ("settle",),
        ("txn", (("conversation", 0, 1, -1), ("delete_conversation", 1))),
    ],
    "a_twin_conversation_deleted_right_after": [
        ("txn", (("conversation", 0, 1, -1),)),
        ("txn", (("delete_conversation", 1),)),
    ],
    # A channel job upserted a new member it had read before the user's own job
    # upserted a newer name: the older name landed last.
    "a_rename_while_a_channel_upserts_its_new_member": [
        ("settle",),
        ("txn", (("sign_up", 1, 0), ("conversation", 4, 0, -1))),
        ("slow", "UpdateUsers", 1),
        ("send_only", "conversation"),
        ("sleep", 0.1),
        ("txn", (("rename", 4, 2),)),
        ("send_only", "user"),
    ],
    # A message job created the channel without the conversation's lock while the
    # conversation's own job removed a member who had just left.
    "a_member_leaves_while_a_message_creates_the_channel": [
        ("txn", (("message", 0, 0, 0),)),
        ("slow", "GetOrCreateChannel", 1),
        ("send_only", "message"),
        ("sleep", 0.05),
        ("txn", (("leave", 0, 1),)),
        ("send_only", "conversation"),
    ],
    # A channel Stream refused to create (or whose creation was still being retried)
    # is in the channel map: a message job sent into it, got a 404 and failed.
    "a_message_into_a_channel_whose_creation_failed": [
        ("reject", "GetOrCreateChannel"),
        ("send_only", "conversation"),
        ("settle",),
        ("txn", (("message", 0, 0, 0),)),
        ("settle",),
        ("expect_done", "message"),
        ("replay",),
    ],
    # A channel's creator (an event's organizer, a proposer) need not be a member, and
    # only members were made sure to exist in Stream: a new organizer who left the
    # conversation made its creation fail ("users involved ... don't exist").
    "a_new_organizer_who_is_not_a_member_creates_the_channel": [
        ("txn", (("sign_up", 1, 0), ("invite", 4, 1, 0), ("leave", 1, 1))),
        ("send_only", "conversation"),
        ("sleep", 0.3),
        ("settle",),
    ],
    # Found sound: kept because they cover what the cases above changed.
    "an_event_is_deleted": [
        ("txn", (("invite", 2, 1, 0),)),
        ("settle",),
        ("txn", (("delete_event", 0),)),
    ],
    "two_invitations_into_one_conversation_then_one_withdrawn": [
        ("txn", (("invite", 2, 1, 0),)),
        ("txn", (("invite_into", 0, 3, 1),), True),
        ("txn", (("uninvite", 1),)),
    ],
    "every_event_renamed_at_once": [
        ("txn", (("invite", 2, 1, 0), ("propose", 0, 3, -1)), True),
        ("txn", (("bulk_rename_events", 2),)),
    ],
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_hard_case_converges(
    pipeline_under_faults: Pipeline, session_factory: Callable[[], Session], case: str
) -> None:
    pipe = pipeline_under_faults
    reset(pipe)
    world = World(pipe, AppModel(session_factory))
    world.app.transaction(PREAMBLE)
    for step in CASES[case]:
        world.step(step)
    world.settle()
    assert set(rows_by_status(pipe)) == {Status.DONE}, rows_by_status(pipe)
    assert differences(pipe, world.app) == []
