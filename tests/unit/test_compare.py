"""The pure comparison of the database's state with Stream's, and the emulator's document."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stream_outbox.worker.stream.protocol import HistoryPage, RemoteChannel
from stream_outbox.worker.sync.bodies import SYSTEM_USER
from stream_outbox.worker.verify.compare import (
    ChannelView,
    Difference,
    State,
    UserView,
    compare,
)
from stream_outbox.worker.verify.history import Wanted, walk_history
from stream_outbox.worker.verify.readers import held_from_snapshot, held_from_stream

CID = "messaging:invitation_1"
OLGA = UserView(name="Olga Organizer", image="https://example.com/olga.png")
GUS = UserView(name="gus@example.com")


def channel(*members: str, name: str | None = "Launch", messages: int | None = 2) -> ChannelView:
    data: dict[str, Any] = {"conversation_id": "c1"}
    if name is not None:
        data["name"] = name
    return ChannelView(members=members, data=data, messages=messages)


def state(users: dict[str, UserView] | None = None, **channels: ChannelView) -> State:
    return State(users or {}, {cid.replace("__", ":"): view for cid, view in channels.items()})


def one(differences: list[Difference]) -> Difference:
    assert len(differences) == 1, differences
    return differences[0]


# -- users -------------------------------------------------------------------------------


def test_equal_sides_have_no_differences() -> None:
    # Given both sides holding the same users and channel (members in another order)
    desired = state({"o": OLGA, "g": GUS}, messaging__invitation_1=channel("o", "g"))
    held = state({"g": GUS, "o": OLGA}, messaging__invitation_1=channel("g", "o"))

    # Then nothing differs
    assert compare(desired=desired, held=held) == []


def test_a_user_missing_in_stream() -> None:
    difference = one(compare(desired=state({"o": OLGA}), held=state()))
    assert (difference.kind, difference.id, difference.what) == ("user", "o", "presence")
    assert (difference.database, difference.stream) == ("present", "missing")


def test_a_user_only_in_stream() -> None:
    difference = one(compare(desired=state(), held=state({"x": GUS})))
    assert (difference.what, difference.database, difference.stream) == (
        "presence",
        "missing",
        "present",
    )


def test_a_renamed_user_and_a_changed_image_are_two_differences() -> None:
    # Given Stream still holding the old name and picture
    held = state({"o": UserView(name="Olga", image="https://example.com/old.png")})

    # When comparing
    differences = compare(desired=state({"o": OLGA}), held=held)

    # Then name and image differ, each shown as the values on both sides
    assert [(d.what, d.database, d.stream) for d in differences] == [
        ("name", "'Olga Organizer'", "'Olga'"),
        ("image", "'https://example.com/olga.png'", "'https://example.com/old.png'"),
    ]


def test_an_image_removed_in_the_database() -> None:
    difference = one(
        compare(desired=state({"o": UserView(name=OLGA.name)}), held=state({"o": OLGA}))
    )
    assert (difference.what, difference.database) == ("image", "-")


# -- channels ----------------------------------------------------------------------------


def test_members_that_differ_are_listed_sorted() -> None:
    desired = state(messaging__invitation_1=channel("o", "g"))
    held = state(messaging__invitation_1=channel("x", "o", "g"))
    difference = one(compare(desired=desired, held=held))
    assert (difference.kind, difference.id, difference.what) == ("channel", CID, "members")
    assert (difference.database, difference.stream) == ("[g, o]", "[g, o, x]")


def test_a_channel_name_that_differs() -> None:
    desired = state(messaging__invitation_1=channel("o", name="Launch (Friday)"))
    held = state(messaging__invitation_1=channel("o", name="Launch"))
    difference = one(compare(desired=desired, held=held))
    assert (difference.what, difference.database, difference.stream) == (
        "name",
        "'Launch (Friday)'",
        "'Launch'",
    )


def test_a_name_stream_keeps_after_the_database_dropped_it() -> None:
    desired = state(messaging__invitation_1=channel("o", name=None))
    held = state(messaging__invitation_1=channel("o", name="Launch"))
    assert one(compare(desired=desired, held=held)).database == "-"


def test_custom_fields_this_product_does_not_own_are_ignored() -> None:
    data = {"conversation_id": "c1", "name": "Launch", "color": "red"}
    held_view = ChannelView(members=("o",), data=data, messages=2)
    assert (
        compare(desired=state(messaging__c=channel("o")), held=state(messaging__c=held_view)) == []
    )


def test_a_channel_missing_in_stream_and_one_only_in_stream() -> None:
    differences = compare(
        desired=state(messaging__a=channel("o")), held=state(messaging__b=channel("o"))
    )
    assert [(d.id, d.what, d.database, d.stream) for d in differences] == [
        ("messaging:a", "presence", "present", "missing"),
        ("messaging:b", "presence", "missing", "present"),
    ]


def test_a_channel_deleted_in_the_database_but_live_in_stream() -> None:
    desired = state(messaging__a=ChannelView(deleted=True))
    difference = one(compare(desired=desired, held=state(messaging__a=channel("o"))))
    assert (difference.what, difference.database, difference.stream) == (
        "deleted",
        "deleted",
        "live",
    )


def test_a_live_channel_that_stream_deleted() -> None:
    held = state(messaging__a=ChannelView(members=("o",), deleted=True))
    difference = one(compare(desired=state(messaging__a=channel("o")), held=held))
    assert (difference.what, difference.database, difference.stream) == (
        "deleted",
        "live",
        "deleted",
    )


def test_a_deleted_channel_is_in_step_when_stream_deleted_it_or_never_had_it() -> None:
    desired = state(messaging__a=ChannelView(deleted=True), messaging__b=ChannelView(deleted=True))
    held = state(messaging__a=ChannelView(members=("o",), deleted=True))
    assert compare(desired=desired, held=held) == []
    # and a channel deleted in Stream that the database no longer names is in step too
    assert compare(desired=state(), held=held) == []


def test_message_counts_are_compared_when_both_sides_counted() -> None:
    desired = state(messaging__a=channel("o", messages=3))
    difference = one(compare(desired=desired, held=state(messaging__a=channel("o", messages=2))))
    assert (difference.what, difference.database, difference.stream) == ("messages", "3", "2")
    assert compare(desired=desired, held=state(messaging__a=channel("o", messages=None))) == []
    assert compare(desired=state(messaging__a=channel("o", messages=None)), held=desired) == []


def test_message_texts_are_compared_when_both_sides_read_them() -> None:
    # Given a message edited in the database, and one Stream holds but the database lacks
    def texts(**by_id: str) -> ChannelView:
        return ChannelView(
            members=("o",), data={"conversation_id": "c1"}, messages=len(by_id), texts=by_id
        )

    desired = state(messaging__a=texts(m1="hello", m2="same"))
    held = state(messaging__a=texts(m1="helo", m2="same"))
    # When comparing, Then the edit is the one difference, named by the message
    difference = one(compare(desired=desired, held=held))
    assert (difference.what, difference.database, difference.stream) == (
        "text of m1",
        "'hello'",
        "'helo'",
    )
    # And a side that did not read texts compares none
    assert (
        compare(desired=desired, held=state(messaging__a=channel("o", name=None, messages=2))) == []
    )


def test_users_come_first_then_channels_each_sorted_by_id() -> None:
    desired = state({"b": OLGA, "a": OLGA}, messaging__z=channel("o"), messaging__y=channel("o"))
    differences = compare(desired=desired, held=state())
    assert [(d.kind, d.id) for d in differences] == [
        ("user", "a"),
        ("user", "b"),
        ("channel", "messaging:y"),
        ("channel", "messaging:z"),
    ]


def test_a_difference_reads_as_one_sentence() -> None:
    difference = Difference("user", "o", "name", "'Olga'", "'O'")
    assert str(difference) == "user o: name is 'Olga' in the database, 'O' in Stream"


# -- Stream's side -----------------------------------------------------------------------


def test_the_emulator_document_becomes_streams_side() -> None:
    # Given the emulator's state: a deactivated user, the system user, a deleted channel,
    # a live one with a deleted message
    snapshot = {
        "users": {
            "o": {"id": "o", "name": "Olga Organizer", "image": "https://example.com/olga.png"},
            "g": {"id": "g", "name": "gus@example.com"},
            "gone": {"id": "gone", "name": "Gone", "deactivated_at": "2026-01-01T00:00:00Z"},
            SYSTEM_USER["id"]: dict(SYSTEM_USER),
        },
        "channels": {
            CID: {
                "type": "messaging",
                "id": "invitation_1",
                "data": {"name": "Launch", "conversation_id": "c1"},
                "members": ["o", "g"],
                "deleted_at": None,
            },
            "messaging:old": {"data": {}, "members": ["o"], "deleted_at": "2026-01-01T00:00:00Z"},
        },
        "messages": {
            CID: [{"id": "m1", "text": "hi"}, {"id": "m2", "deleted_at": "2026-01-02T00:00:00Z"}]
        },
    }

    # When read
    held = held_from_snapshot(snapshot)

    # Then only the active users of the app are there, and each channel as Stream has it
    assert held.users == {"o": OLGA, "g": GUS}
    assert held.channels[CID] == ChannelView(
        members=("g", "o"),
        data={"name": "Launch", "conversation_id": "c1"},
        deleted=False,
        messages=1,
        texts={"m1": "hi"},
    )
    assert held.channels["messaging:old"].deleted
    assert held.channels["messaging:old"].messages == 0


class FakeGateway:
    """Answers like the gateway: users found among those asked, the channels it holds."""

    def __init__(self, users: dict[str, dict[str, Any]], channels: dict[str, RemoteChannel]):
        self.users, self.channels = users, channels
        self.asked: list[str] = []

    def query_users(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {uid: self.users[uid] for uid in user_ids if uid in self.users}

    def channel_states(
        self, cids: Sequence[str], *, history: bool = False
    ) -> dict[str, RemoteChannel]:
        self.asked += cids
        return {cid: self.channels[cid] for cid in cids if cid in self.channels}

    def history_page(self, channel_type: str, channel_id: str, before: str) -> HistoryPage:
        return HistoryPage()


def test_stream_is_asked_about_what_the_database_names() -> None:
    # Given a database naming two users and two channels, one of them deleted
    desired = state(
        {"o": OLGA, "g": GUS},
        messaging__invitation_1=channel("o", "g"),
        messaging__old=ChannelView(deleted=True),
    )
    remote = RemoteChannel("messaging", "invitation_1", frozenset({"o"}), {"name": "Launch"})
    gateway = FakeGateway(
        {"o": {"id": "o", "name": "Olga Organizer", "image": "https://example.com/olga.png"}},
        {CID: remote},
    )

    # When Stream's side is read through the gateway
    held = held_from_stream(gateway, desired)

    # Then it holds what Stream answered, messages uncounted
    assert held.users == {"o": OLGA}
    assert held.channels == {CID: ChannelView(members=("o",), data={"name": "Launch"})}
    assert sorted(gateway.asked) == [CID, "messaging:old"]
    # and the comparison finds the missing user and member, the deleted channel in step
    assert [(d.id, d.what) for d in compare(desired=desired, held=held)] == [
        ("g", "presence"),
        (CID, "members"),
        (CID, "conversation_id"),
    ]


# -- history: each message once, at its original time, in order; members' reads ----------

T1, T2, T3 = "2024-01-01T10:00:00.000Z", "2024-01-01T11:00:00.000Z", "2024-01-01T12:00:00.000Z"


def history(times: dict[str, str | None], reads: dict[str, str | None] | None = None) -> State:
    return state(
        messaging__invitation_1=ChannelView(members=("o",), times=times, reads=reads or {})
    )


def whats(desired: State, held: State) -> list[tuple[str, str, str]]:
    return [(d.what, d.database, d.stream) for d in compare(desired=desired, held=held)]


def test_the_same_history_on_both_sides_has_no_differences() -> None:
    # Given the database's times to the microsecond, Stream's to the millisecond and in
    # another notation, a message sent live (its time not compared) and a read
    desired = history({"msg-1": "2024-01-01T10:00:00.000Z", "msg-2": T2, "msg-3": None}, {"o": T2})
    held = history(
        {"msg-1": "2024-01-01T10:00:00.000400+00:00", "msg-2": T2, "msg-3": T3}, {"o": T2}
    )

    # Then nothing differs
    assert compare(desired=desired, held=held) == []


def test_missing_and_extra_messages_are_named() -> None:
    assert whats(history({"msg-1": T1, "msg-2": T2}), history({"msg-1": T1, "msg-9": T3})) == [
        ("message msg-2", "present", "missing"),
        ("message msg-9", "missing", "present"),
    ]


def test_a_message_at_another_time_is_named_with_both_times() -> None:
    assert whats(history({"msg-1": T1}), history({"msg-1": T3})) == [
        ("created_at of msg-1", T1, T3)
    ]


def test_messages_out_of_order_in_stream_are_named() -> None:
    # Given Stream listing msg-2 before msg-1, though the database has msg-1 earlier
    found = whats(history({"msg-1": T1, "msg-2": T2}), history({"msg-2": T2, "msg-1": T1}))

    # Then the order differs (and no time does)
    assert found == [("order", "msg-1 before msg-2", "msg-1 after msg-2")]


def test_a_read_state_is_compared_unless_stream_moved_it_on() -> None:
    # A read Stream holds otherwise is named; one Stream moved on (None) is not compared;
    # one the database does not hold is not either
    assert whats(history({}, {"o": T1}), history({}, {"o": T2})) == [("last_read of o", T1, T2)]
    assert whats(history({}, {"o": T1}), history({}, {})) == [("last_read of o", T1, "-")]
    assert compare(desired=history({}, {"o": T1}), held=history({}, {"o": None})) == []
    assert compare(desired=history({}, {"o": None}), held=history({}, {"o": T3})) == []


# -- the same, walked page by page ----------------------------------------------------


def walked(want: dict[str, str | None], have: dict[str, str], kept: bool = True) -> list[Any]:
    """``walk_history`` of two histories given oldest first (both read newest first)."""
    wanted = [
        Wanted(mid, at, at if kept else None)
        for mid, at in sorted(want.items(), key=lambda m: (m[1] is not None, m[1]), reverse=True)
    ]
    return list(walk_history(wanted, reversed(list(have.items()))))


def test_a_walk_of_the_same_history_finds_nothing() -> None:
    assert walked({"msg-1": T1, "msg-2": T2}, {"msg-1": T1, "msg-2": "2024-01-01T11:00:00Z"}) == []


def test_a_walk_names_missing_and_extra_messages_and_other_times() -> None:
    # Given Stream missing msg-2, holding msg-9 the database does not, msg-3 at another time
    found = walked({"msg-1": T1, "msg-2": T2, "msg-3": T2}, {"msg-1": T1, "msg-9": T2, "msg-3": T3})

    # Then each is named, as compare_history names them
    assert sorted(found) == [
        ("created_at of msg-3", T2, T3),
        ("message msg-2", "present", "missing"),
        ("message msg-9", "missing", "present"),
    ]


def test_a_walk_names_the_order_stream_lists_otherwise() -> None:
    # Given Stream listing msg-2 before msg-1, though the database has msg-1 earlier
    found = walked({"msg-1": T1, "msg-2": T2}, {"msg-2": T2, "msg-1": T1})

    # Then the order differs, as compare_history says it
    assert found == [("order", "msg-1 before msg-2", "msg-1 after msg-2")]


def test_a_walk_matches_messages_sent_live_at_a_later_time_in_stream() -> None:
    # Given messages sent live (times not compared): Stream's times are later, and Stream
    # lists msg-1 after msg-2, whose database time is later
    found = walked(
        {"msg-0": None, "msg-1": T1, "msg-2": T2}, {"msg-2": T2, "msg-1": T3, "msg-0": T3}, False
    )

    # Then each is found once, and nothing differs
    assert found == []


def test_a_walk_reads_the_database_only_as_far_as_stream_s_side() -> None:
    # Given a long history on both sides, Stream's time for each to the millisecond
    times = [
        f"2024-01-01T10:{n // 60000 % 60:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}Z"
        for n in range(20_000)
    ]
    want = (Wanted(f"msg-{n}", times[n], times[n]) for n in reversed(range(20_000)))
    seen: list[int] = []

    def have() -> Any:
        for n in reversed(range(20_000)):
            seen.append(n)
            yield (f"msg-{n}", times[n])

    # When walked, the database's side is read only as far as Stream's has come
    walk = walk_history(_counting(want, seen), have())
    assert list(walk) == []


def _counting(want: Any, seen: list[int]) -> Any:
    for wanted in want:
        n = int(wanted.id.split("-")[1])
        assert not seen or n >= seen[-1] - 1, "read ahead of Stream's side"
        yield wanted
