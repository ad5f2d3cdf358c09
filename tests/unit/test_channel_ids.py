"""Channel-id rules and Stream id validation (pure, no I/O)."""

from __future__ import annotations

import hashlib
import itertools
import uuid

import pytest

from stream_outbox.app_hooks.channel_ids import (
    CHANNEL_ID_MAX_LENGTH,
    CHANNEL_TYPE,
    USER_ID_MAX_LENGTH,
    ChannelFacts,
    InvalidStreamId,
    choose_channel_id,
    direct_message_id,
    fallback_channel_id,
    validate_channel_id,
    validate_user_id,
)
from stream_outbox.app_hooks.desired import stream_message_id

CONVERSATION = "c1"
ALICE = str(uuid.UUID(int=1))
BOB = str(uuid.UUID(int=2))
CAROL = str(uuid.UUID(int=3))

# Characters Stream rejects in both kinds of id.
BAD_CHARACTERS = {
    "space": "a b",
    "dot": "a.b",
    "colon": "a:b",
    "slash": "a/b",
    "pipe": "a|b",
    "emoji": "chat\U0001f600",
    "rtl": "\u05e9\u05dc\u05d5\u05dd",
    "rtl_mark": "ab\u200fcd",
    "accented": "caf\u00e9",
    "nul": "a\x00b",
    "newline": "ab\n",
    "tab": "a\tb",
    "line_separator": "a\u2028b",
}


def assert_one_line_naming(error: InvalidStreamId, value: str) -> None:
    message = str(error)
    assert message
    assert message.splitlines() == [message]
    assert "\n" not in message and "\r" not in message and "\x00" not in message
    assert repr(value[:80]) in message


# -- constants ----------------------------------------------------------------------


def test_limits_are_streams() -> None:
    assert CHANNEL_TYPE == "messaging"
    assert CHANNEL_ID_MAX_LENGTH == 64
    assert USER_ID_MAX_LENGTH == 255
    assert issubclass(InvalidStreamId, ValueError)


# -- choose_channel_id: precedence -------------------------------------------------


def test_invitation_wins_over_everything() -> None:
    # Given a conversation that is an invitation, a proposal, legacy and a two-person chat
    facts = ChannelFacts(
        conversation_id=CONVERSATION,
        invitation_id="i9",
        proposal_id="p9",
        member_ids=(ALICE, BOB),
        legacy=True,
    )
    # When its channel id is chosen / Then the invitation names it
    assert choose_channel_id(facts) == "invitation_i9"


def test_proposal_wins_over_legacy_and_direct_message() -> None:
    facts = ChannelFacts(
        conversation_id=CONVERSATION, proposal_id="p9", member_ids=(ALICE, BOB), legacy=True
    )
    assert choose_channel_id(facts) == "proposal_p9"


def test_legacy_wins_over_direct_message() -> None:
    facts = ChannelFacts(conversation_id=CONVERSATION, member_ids=(ALICE, BOB), legacy=True)
    assert choose_channel_id(facts) == f"legacy_{CONVERSATION}"


def test_two_members_get_the_direct_message_id() -> None:
    facts = ChannelFacts(conversation_id=CONVERSATION, member_ids=(ALICE, BOB))
    assert choose_channel_id(facts) == direct_message_id([ALICE, BOB])


def test_two_distinct_members_listed_twice_still_make_a_direct_message() -> None:
    facts = ChannelFacts(conversation_id=CONVERSATION, member_ids=(ALICE, BOB, ALICE))
    assert choose_channel_id(facts).startswith("dm_")


@pytest.mark.parametrize(
    "members",
    [(), (ALICE,), (ALICE, ALICE), (ALICE, BOB, CAROL)],
    ids=["nobody", "one", "one_twice", "three"],
)
def test_other_conversations_fall_back(members: tuple[str, ...]) -> None:
    facts = ChannelFacts(conversation_id=CONVERSATION, member_ids=members)
    assert choose_channel_id(facts) == f"conversation_{CONVERSATION}"


def test_empty_string_ids_still_count_as_present() -> None:
    # An empty invitation id is "present" (not None) and yields an id that is still valid.
    assert choose_channel_id(ChannelFacts(CONVERSATION, invitation_id="")) == "invitation_"
    assert choose_channel_id(ChannelFacts(CONVERSATION, proposal_id="")) == "proposal_"


def test_uuid_ids_fit_every_rule() -> None:
    # Given UUID-shaped ids, the longest realistic inputs
    cid, other = str(uuid.uuid4()), str(uuid.uuid4())
    chosen = [
        choose_channel_id(ChannelFacts(cid, invitation_id=other)),
        choose_channel_id(ChannelFacts(cid, proposal_id=other)),
        choose_channel_id(ChannelFacts(cid, legacy=True)),
        choose_channel_id(ChannelFacts(cid, member_ids=(ALICE, BOB))),
        choose_channel_id(ChannelFacts(cid)),
    ]
    # Then every rule gives a distinct, valid id
    assert len(set(chosen)) == len(chosen)
    for channel_id in chosen:
        assert validate_channel_id(channel_id) == channel_id
        assert len(channel_id) <= CHANNEL_ID_MAX_LENGTH


@pytest.mark.parametrize(
    "facts",
    [
        ChannelFacts(CONVERSATION, invitation_id="bad id"),
        ChannelFacts(CONVERSATION, proposal_id="p.1"),
        ChannelFacts("conv:1", legacy=True),
        ChannelFacts("x" * 60),
        ChannelFacts(CONVERSATION, invitation_id="\u05e9"),
    ],
    ids=["invitation_space", "proposal_dot", "legacy_colon", "too_long", "rtl"],
)
def test_choosing_an_id_stream_rejects_raises(facts: ChannelFacts) -> None:
    with pytest.raises(InvalidStreamId):
        choose_channel_id(facts)


def test_channel_facts_are_frozen() -> None:
    facts = ChannelFacts(CONVERSATION)
    with pytest.raises(AttributeError):
        facts.legacy = True  # type: ignore[misc]


# -- direct_message_id ----------------------------------------------------------------


def test_direct_message_id_ignores_order() -> None:
    assert direct_message_id([ALICE, BOB]) == direct_message_id([BOB, ALICE])


def test_direct_message_id_accepts_any_iterable() -> None:
    expected = direct_message_id([ALICE, BOB])
    assert direct_message_id((BOB, ALICE)) == expected
    assert direct_message_id(iter([BOB, ALICE])) == expected
    assert direct_message_id(member for member in (ALICE, BOB)) == expected


def test_direct_message_id_is_stable_across_calls() -> None:
    # A pinned value: the id is stored in the channel map, so it must never change.
    assert direct_message_id(["a", "b"]) == "dm_0eab8a0a3380abf4c7d1fb0b43b66aafbb64a4b9"
    assert direct_message_id([ALICE, BOB]) == direct_message_id([ALICE, BOB])


def test_direct_message_id_matches_the_documented_hash() -> None:
    digest = hashlib.sha256(f"{ALICE}|{BOB}".encode()).hexdigest()[:40]
    assert direct_message_id([BOB, ALICE]) == f"dm_{digest}"


def test_direct_message_id_is_short_and_valid() -> None:
    long_member = "u" * USER_ID_MAX_LENGTH
    for pair in ([ALICE, BOB], ["a", "b"], [long_member, long_member[:-1]]):
        channel_id = direct_message_id(pair)
        assert len(channel_id) == 43
        assert len(channel_id) <= CHANNEL_ID_MAX_LENGTH
        assert validate_channel_id(channel_id) == channel_id


def test_direct_message_id_differs_per_pair() -> None:
    people = [str(uuid.UUID(int=n)) for n in range(1, 12)]
    ids = {direct_message_id(pair) for pair in itertools.combinations(people, 2)}
    assert len(ids) == 55


def test_direct_message_id_is_not_a_plain_concatenation() -> None:
    # ("ab", "c") and ("a", "bc") join to the same characters but are other pairs.
    assert direct_message_id(["ab", "c"]) != direct_message_id(["a", "bc"])


def test_direct_message_id_ignores_duplicate_member_ids() -> None:
    # Given the same two people, one of them listed twice
    # Then they get the same channel as when each is listed once
    assert direct_message_id([ALICE, BOB, ALICE]) == direct_message_id([ALICE, BOB])


def test_choose_channel_id_gives_a_pair_one_channel_however_members_are_listed() -> None:
    once = choose_channel_id(ChannelFacts(CONVERSATION, member_ids=(ALICE, BOB)))
    twice = choose_channel_id(ChannelFacts(CONVERSATION, member_ids=(ALICE, BOB, BOB)))
    assert once == twice


# -- fallback_channel_id --------------------------------------------------------------


def test_fallback_is_the_conversation_id() -> None:
    assert fallback_channel_id("42") == "conversation_42"
    cid = str(uuid.uuid4())
    assert fallback_channel_id(cid) == f"conversation_{cid}"


def test_fallback_matches_the_last_rule_of_choose() -> None:
    assert fallback_channel_id(CONVERSATION) == choose_channel_id(ChannelFacts(CONVERSATION))


def test_fallback_at_the_length_limit() -> None:
    prefix = len("conversation_")
    longest = "x" * (CHANNEL_ID_MAX_LENGTH - prefix)
    assert len(fallback_channel_id(longest)) == CHANNEL_ID_MAX_LENGTH
    with pytest.raises(InvalidStreamId):
        fallback_channel_id(longest + "x")


@pytest.mark.parametrize("conversation_id", ["a b", "a.b", "\u05e9"])
def test_fallback_rejects_bad_conversation_ids(conversation_id: str) -> None:
    with pytest.raises(InvalidStreamId) as caught:
        fallback_channel_id(conversation_id)
    assert_one_line_naming(caught.value, f"conversation_{conversation_id}")


# -- validate_channel_id --------------------------------------------------------------


@pytest.mark.parametrize(
    "channel_id",
    [
        "a",
        "Z",
        "0",
        "_",
        "-",
        "abc-DEF_123",
        "x" * CHANNEL_ID_MAX_LENGTH,
        str(uuid.UUID(int=7)),
    ],
)
def test_good_channel_ids_pass_unchanged(channel_id: str) -> None:
    assert validate_channel_id(channel_id) == channel_id


def test_channel_id_length_boundary() -> None:
    assert validate_channel_id("x" * 64) == "x" * 64
    too_long = "x" * 65
    with pytest.raises(InvalidStreamId, match="1 to 64 characters") as caught:
        validate_channel_id(too_long)
    assert_one_line_naming(caught.value, too_long)


def test_empty_channel_id_is_rejected() -> None:
    with pytest.raises(InvalidStreamId, match="1 to 64 characters") as caught:
        validate_channel_id("")
    assert_one_line_naming(caught.value, "")


@pytest.mark.parametrize(
    "channel_id", [*BAD_CHARACTERS.values(), "a@b"], ids=[*BAD_CHARACTERS, "at"]
)
def test_channel_id_with_bad_characters_is_rejected(channel_id: str) -> None:
    with pytest.raises(InvalidStreamId, match="may only contain") as caught:
        validate_channel_id(channel_id)
    assert_one_line_naming(caught.value, channel_id)


def test_very_long_channel_id_message_stays_short() -> None:
    huge = "y" * 10_000
    with pytest.raises(InvalidStreamId) as caught:
        validate_channel_id(huge)
    assert_one_line_naming(caught.value, huge)
    assert len(str(caught.value)) < 200


def test_too_long_and_bad_characters_reports_the_length() -> None:
    with pytest.raises(InvalidStreamId, match="1 to 64 characters"):
        validate_channel_id("a b" * 30)


# -- validate_user_id -----------------------------------------------------------------


@pytest.mark.parametrize(
    "user_id",
    [
        "a",
        "0",
        "@",
        "_",
        "-",
        "john@example_com",
        str(uuid.UUID(int=9)),
        "u" * USER_ID_MAX_LENGTH,
        "42",
    ],
)
def test_good_user_ids_pass_unchanged(user_id: str) -> None:
    assert validate_user_id(user_id) == user_id


def test_user_id_length_boundary() -> None:
    assert validate_user_id("u" * 255) == "u" * 255
    too_long = "u" * 256
    with pytest.raises(InvalidStreamId, match="1 to 255 characters") as caught:
        validate_user_id(too_long)
    assert_one_line_naming(caught.value, too_long)


def test_empty_user_id_is_rejected() -> None:
    with pytest.raises(InvalidStreamId, match="1 to 255 characters") as caught:
        validate_user_id("")
    assert_one_line_naming(caught.value, "")


@pytest.mark.parametrize(
    "user_id", [*BAD_CHARACTERS.values(), "a!b"], ids=[*BAD_CHARACTERS, "bang"]
)
def test_user_id_with_bad_characters_is_rejected(user_id: str) -> None:
    with pytest.raises(InvalidStreamId, match="may only contain") as caught:
        validate_user_id(user_id)
    assert_one_line_naming(caught.value, user_id)


def test_channel_and_user_alphabets_differ() -> None:
    # '@' is for users only; '!' is reserved by Stream in channel ids and invalid in user ids.
    assert validate_user_id("a@b") == "a@b"
    with pytest.raises(InvalidStreamId, match="channel id"):
        validate_channel_id("a!b")
    with pytest.raises(InvalidStreamId, match="channel id"):
        validate_channel_id("a@b")
    with pytest.raises(InvalidStreamId, match="user id"):
        validate_user_id("a!b")


def test_message_ids_of_each_channel_generation_never_collide() -> None:
    # The first generation keeps the ids the history import and the live path always used
    assert stream_message_id("42") == "msg-42"
    assert stream_message_id("42", 1) == "msg1-42"
    assert stream_message_id("42", 12) == "msg12-42"
    # An app id that looks like a generation's suffix still maps to a distinct id
    ids = {"1-42", "42", "2-42", "-42"}
    made = [stream_message_id(mid, generation) for mid in ids for generation in range(3)]
    assert len(set(made)) == len(made)
