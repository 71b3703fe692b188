"""The sans-I/O room (XEP-0045): joining, talking, moderating and configuring, with each
occupant's deliveries collected in a list."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from protocols.xmpp.archive import Record
from protocols.xmpp.jid import JID, parse_jid
from protocols.xmpp.muc.config import RoomConfig
from protocols.xmpp.muc.room import NS_ADMIN, NS_MUC, NS_USER, MucError, Occupant, Room
from protocols.xmpp.stanza import element, serialize

ROOM = JID("lobby", "conference.localhost", "")


class Recorder:
    """RoomEvents, counted."""

    def __init__(self) -> None:
        self.saves = 0
        self.records: list[Record] = []
        self.bridged: list[tuple[str, str]] = []
        self.closes = 0

    def saved(self, room: Room) -> None:
        self.saves += 1

    def logged(self, room: Room, record: Record, dropped: Record | None) -> None:
        self.records.append(record)

    def said(self, room: Room, occupant: Occupant, body: str) -> None:
        self.bridged.append((occupant.nick, body))

    def closed(self, room: Room) -> None:
        self.closes += 1


class Person:
    """A real JID and what it received."""

    def __init__(self, jid: str) -> None:
        self.jid = parse_jid(jid)
        self.inbox: list[etree._Element] = []

    def deliver(self, data: bytes) -> None:
        self.inbox.append(etree.fromstring(data))

    def take(self) -> list[etree._Element]:
        got, self.inbox = self.inbox, []
        return got


def _presence(to: str, kind: str | None = None, password: str | None = None) -> etree._Element:
    presence = element("presence", to=to)
    if kind is not None:
        presence.set("type", kind)
    x = etree.SubElement(presence, f"{{{NS_MUC}}}x")
    if password is not None:
        etree.SubElement(x, f"{{{NS_MUC}}}password").text = password
    return presence


def enter(room: Room, person: Person, nick: str, **kwargs: object) -> None:
    room.presence(
        person.jid, nick, _presence(f"{ROOM}/{nick}"), person.deliver, serialize, **kwargs
    )


def groupchat(body: str | None = None, subject: str | None = None) -> etree._Element:
    message = element("message", to=str(ROOM), type="groupchat", id="m1")
    if body is not None:
        etree.SubElement(message, "{jabber:client}body").text = body
    if subject is not None:
        etree.SubElement(message, "{jabber:client}subject").text = subject
    return message


def codes(stanza: etree._Element) -> set[int]:
    return {int(s.get("code")) for s in stanza.iter(f"{{{NS_USER}}}status")}


def item(stanza: etree._Element) -> etree._Element:
    found = stanza.find(f"{{{NS_USER}}}x/{{{NS_USER}}}item")
    assert found is not None
    return found


@pytest.fixture
def events() -> Recorder:
    return Recorder()


@pytest.fixture
def people() -> tuple[Person, Person, Person]:
    return (
        Person("alice@localhost/desk"),
        Person("bob@localhost/phone"),
        Person("carol@localhost/laptop"),
    )


@pytest.fixture
def room(events: Recorder, people: tuple[Person, Person, Person]) -> Room:
    """lobby, owned by alice, unlocked, with alice, bob and carol in it."""
    alice, bob, carol = people
    room = Room(ROOM, events, affiliations={"alice@localhost": "owner"})
    for person, nick in zip(people, ("alice", "bob", "carol"), strict=True):
        enter(room, person, nick)
    for person in people:
        person.take()
    return room


def test_creation_locks_until_configured(events: Recorder) -> None:
    alice, bob = Person("alice@localhost/desk"), Person("bob@localhost/phone")
    room = Room(ROOM, events, affiliations={"alice@localhost": "owner"}, locked=True)
    enter(room, alice, "alice", created=True)
    own, subject = alice.take()
    assert {110, 201, 170} <= codes(own)
    assert (item(own).get("affiliation"), item(own).get("role")) == ("owner", "moderator")
    assert subject.find("{jabber:client}subject") is not None
    with pytest.raises(MucError) as refused:
        enter(room, bob, "bob")
    assert refused.value.condition == "item-not-found"
    submit = etree.fromstring("<x xmlns='jabber:x:data' type='submit'/>")
    assert room.configure(alice.jid, submit)
    assert not room.locked
    enter(room, bob, "bob")


def test_a_newcomer_learns_who_is_there_then_itself_then_history_and_subject(
    room: Room, people: tuple[Person, ...]
) -> None:
    alice, bob, carol = people
    room.groupchat(alice.jid, groupchat("before you came"), serialize)
    dave = Person("dave@localhost/x")
    enter(room, dave, "dave")
    got = dave.take()
    assert [s.get("from") for s in got[:3]] == [f"{ROOM}/{n}" for n in ("alice", "bob", "carol")]
    assert codes(got[3]) >= {110} and got[3].get("from") == f"{ROOM}/dave"
    assert got[4].findtext("{jabber:client}body") == "before you came"
    assert got[4].find("{urn:xmpp:delay}delay").get("from") == str(ROOM)
    assert got[5].find("{jabber:client}subject") is not None
    # semi-anonymous: bob (no moderator) does not see dave's real JID, alice does
    assert item(bob.inbox[-1]).get("jid") is None
    assert item(alice.inbox[-1]).get("jid") == "dave@localhost/x"


def test_groupchat_fans_out_once_serialized_with_each_to(
    room: Room, people: tuple[Person, ...], events: Recorder
) -> None:
    alice, bob, carol = people
    room.groupchat(bob.jid, groupchat("hi all"), serialize)
    for person in people:
        (message,) = person.take()
        assert message.get("to") == str(person.jid)
        assert message.get("from") == f"{ROOM}/bob"
        assert message.findtext("{jabber:client}body") == "hi all"
        assert message.find("{urn:xmpp:sid:0}stanza-id").get("by") == str(ROOM)
    assert events.bridged == [("bob", "hi all")]
    assert len(events.records) == 1 and b" to=" not in events.records[0].stanza


def test_a_forged_stanza_id_by_the_room_is_dropped(room: Room, people: tuple[Person, ...]) -> None:
    alice = people[0]
    message = groupchat("mine")
    etree.SubElement(message, "{urn:xmpp:sid:0}stanza-id", by=str(ROOM), id="fake")
    room.groupchat(alice.jid, message, serialize)
    ids = alice.take()[0].findall("{urn:xmpp:sid:0}stanza-id")
    assert len(ids) == 1 and ids[0].get("id") != "fake"


def test_non_occupants_and_visitors_may_not_speak(room: Room, events: Recorder) -> None:
    with pytest.raises(MucError) as refused:
        room.groupchat(parse_jid("eve@localhost/x"), groupchat("hello"), serialize)
    assert refused.value.condition == "not-acceptable"
    room.config = RoomConfig(moderated=True)
    eve = Person("eve@localhost/x")
    enter(room, eve, "eve")
    with pytest.raises(MucError) as refused:
        room.groupchat(eve.jid, groupchat("hello"), serialize)
    assert refused.value.condition == "forbidden"


def test_subject_needs_a_moderator_unless_configured(
    room: Room, people: tuple[Person, ...], events: Recorder
) -> None:
    alice, bob, _ = people
    with pytest.raises(MucError):
        room.groupchat(bob.jid, groupchat(subject="bob's"), serialize)
    room.groupchat(alice.jid, groupchat(subject="alice's"), serialize)
    assert room.subject == ("alice's", "alice")
    assert events.saves == 1
    room.config = RoomConfig(change_subject=True)
    room.groupchat(bob.jid, groupchat(subject="bob's"), serialize)
    assert room.subject == ("bob's", "bob")


def test_join_refusals(events: Recorder) -> None:
    room = Room(
        ROOM,
        events,
        RoomConfig(members_only=True, max_users=2),
        {"alice@localhost": "owner", "bob@localhost": "member", "eve@localhost": "outcast"},
    )
    alice, bob = Person("alice@localhost/a"), Person("bob@localhost/b")
    cases = [
        (Person("eve@localhost/e"), "eve", "forbidden"),
        (Person("carol@localhost/c"), "carol", "registration-required"),
    ]
    for person, nick, condition in cases:
        with pytest.raises(MucError) as refused:
            enter(room, person, nick)
        assert refused.value.condition == condition
    enter(room, alice, "alice")
    with pytest.raises(MucError) as refused:
        enter(room, bob, "alice")
    assert refused.value.condition == "conflict"
    enter(room, bob, "bob")
    room.affiliations["carol@localhost"] = "member"
    with pytest.raises(MucError) as refused:
        enter(room, Person("carol@localhost/c"), "carol")
    assert refused.value.condition == "service-unavailable"


def test_password(events: Recorder) -> None:
    room = Room(ROOM, events, RoomConfig(password_protected=True, password="pw"))
    bob = Person("bob@localhost/b")
    for password in (None, "wrong"):
        with pytest.raises(MucError) as refused:
            room.presence(bob.jid, "bob", _presence("x", password=password), bob.deliver, serialize)
        assert refused.value.condition == "not-authorized"
    room.presence(bob.jid, "bob", _presence("x", password="pw"), bob.deliver, serialize)


def test_nick_change(room: Room, people: tuple[Person, ...]) -> None:
    alice, bob, _ = people
    room.presence(bob.jid, "robert", _presence("x"), bob.deliver, serialize)
    left, arrived = alice.take()
    assert left.get("type") == "unavailable" and codes(left) == {303}
    assert item(left).get("nick") == "robert"
    assert arrived.get("from") == f"{ROOM}/robert"
    assert {303, 110} <= codes(bob.take()[0])
    with pytest.raises(MucError) as refused:
        room.presence(bob.jid, "alice", _presence("x"), bob.deliver, serialize)
    assert refused.value.condition == "conflict"


def _admin(**attrs: str) -> etree._Element:
    query = etree.Element(f"{{{NS_ADMIN}}}query")
    etree.SubElement(query, f"{{{NS_ADMIN}}}item", **attrs)
    return query


def test_kick_and_ban(room: Room, people: tuple[Person, ...], events: Recorder) -> None:
    alice, bob, carol = people
    with pytest.raises(MucError) as refused:
        room.admin_set(bob.jid, _admin(nick="carol", role="none"))
    assert refused.value.condition == "forbidden"
    assert not room.admin_set(alice.jid, _admin(nick="carol", role="none"))
    assert {307, 110} <= codes(carol.take()[-1])
    assert 307 in codes(bob.take()[-1])
    assert "carol" not in room.occupants
    assert room.admin_set(alice.jid, _admin(jid="bob@localhost", affiliation="outcast"))
    banned = bob.take()[-1]
    assert {301, 110} <= codes(banned) and item(banned).get("affiliation") == "outcast"
    assert room.affiliations["bob@localhost"] == "outcast"
    assert events.saves == 1


def test_admins_cannot_touch_owners(room: Room, people: tuple[Person, ...]) -> None:
    alice, bob, _ = people
    room.admin_set(alice.jid, _admin(jid="bob@localhost", affiliation="admin"))
    for attrs, condition in (
        ({"nick": "alice", "role": "none"}, "not-allowed"),
        ({"jid": "alice@localhost", "affiliation": "outcast"}, "not-allowed"),
        ({"jid": "carol@localhost", "affiliation": "admin"}, "not-allowed"),
    ):
        with pytest.raises(MucError) as refused:
            room.admin_set(bob.jid, _admin(**attrs))
        assert refused.value.condition == condition
    room.admin_set(bob.jid, _admin(jid="carol@localhost", affiliation="member"))


def test_lists_by_affiliation_and_role(room: Room, people: tuple[Person, ...]) -> None:
    alice, bob, _ = people
    room.admin_set(alice.jid, _admin(jid="dave@localhost", affiliation="member"))
    members = room.admin_items(alice.jid, _admin(affiliation="member"))
    assert [i.get("jid") for i in members] == ["dave@localhost"]
    participants = room.admin_items(alice.jid, _admin(role="participant"))
    assert sorted(i.get("nick") for i in participants) == ["bob", "carol"]
    with pytest.raises(MucError):
        room.admin_items(bob.jid, _admin(affiliation="member"))


def test_private_messages(room: Room, people: tuple[Person, ...]) -> None:
    alice, bob, carol = people
    message = element("message", to=f"{ROOM}/carol", type="chat")
    etree.SubElement(message, "{jabber:client}body").text = "psst"
    room.private(bob.jid, "carol", message, serialize)
    (got,) = carol.take()
    assert got.get("from") == f"{ROOM}/bob" and got.get("to") == str(carol.jid)
    assert got.find(f"{{{NS_USER}}}x") is not None
    assert alice.take() == []
    room.config = RoomConfig(allow_pm="moderators")
    with pytest.raises(MucError) as refused:
        room.private(bob.jid, "carol", message, serialize)
    assert refused.value.condition == "forbidden"
    room.private(alice.jid, "carol", message, serialize)


def test_temporary_room_closes_when_empty_persistent_stays(
    room: Room, people: tuple[Person, ...], events: Recorder
) -> None:
    for person in people:
        room.leave(room.by_jid[person.jid])
    assert events.closes == 1
    persistent = Room(ROOM, events, RoomConfig(persistent=True))
    alice = people[0]
    enter(persistent, alice, "alice")
    persistent.leave(persistent.by_jid[alice.jid])
    assert events.closes == 1


def test_history_limits(room: Room, people: tuple[Person, ...]) -> None:
    alice = people[0]
    for n in range(5):
        room.groupchat(alice.jid, groupchat(f"line {n}"), serialize)
    assert [r.seq for r in room.log.history(3)] == [3, 4, 5]
    assert [r.seq for r in room.log.history(20, maxstanzas=2)] == [4, 5]
    assert room.log.history(20, maxchars=0) == []
    one = len(room.log.records[-1].stanza)
    assert len(room.log.history(20, maxchars=one * 2)) == 2
    newest = room.log.records[-1].stamp
    assert room.log.history(20, seconds=0, now=newest + 10) == []
    assert len(room.log.history(20, since=newest - 3600)) == 5


def test_bridged_messages_come_from_the_publishers_nick(
    room: Room, people: tuple[Person, ...], events: Recorder
) -> None:
    room.say("sensor-7", "temperature <31> & rising")
    for person in people:
        (message,) = person.take()
        assert message.get("from") == f"{ROOM}/sensor-7"
        assert message.findtext("{jabber:client}body") == "temperature <31> & rising"
    assert events.bridged == []  # not sent back where it came from
    assert len(events.records) == 1


def test_destroy_tells_everyone(room: Room, people: tuple[Person, ...], events: Recorder) -> None:
    room.destroy("closing", "new@conference.localhost")
    for person in people:
        (gone,) = person.take()
        destroy = gone.find(f"{{{NS_USER}}}x/{{{NS_USER}}}destroy")
        assert destroy.get("jid") == "new@conference.localhost"
        assert destroy.findtext(f"{{{NS_USER}}}reason") == "closing"
    assert events.closes == 1 and room.empty


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["join", "leave", "say", "nick", "kick", "ban", "pm"]),
        st.integers(0, 3),
        st.sampled_from(["a", "b", "c", "d"]),
    ),
    max_size=30,
)


@given(_OPS)
def test_any_sequence_keeps_the_room_consistent(ops: list[tuple[str, int, str]]) -> None:
    """Whatever happens, occupants by nick and by JID agree, nobody banned is inside,
    and every message said is logged."""
    events = Recorder()
    room = Room(ROOM, events, RoomConfig(persistent=True), {"p0@localhost": "owner"})
    people = [Person(f"p{n}@localhost/r") for n in range(4)]
    for op, who, nick in ops:
        person = people[who]
        occupant = room.by_jid.get(person.jid)
        try:
            if op == "join":
                enter(room, person, nick)
            elif op == "leave" and occupant is not None:
                room.leave(occupant)
            elif op == "say":
                room.groupchat(person.jid, groupchat(f"{who} says"), serialize)
            elif op == "nick":
                room.presence(person.jid, nick, _presence("x"), person.deliver, serialize)
            elif op == "kick":
                room.admin_set(people[0].jid, _admin(nick=nick, role="none"))
            elif op == "ban":
                room.admin_set(
                    people[0].jid, _admin(jid=f"p{who}@localhost", affiliation="outcast")
                )
            elif op == "pm":
                room.private(person.jid, nick, groupchat("psst"), serialize)
        except MucError:
            pass
        assert {o.nick for o in room.by_jid.values()} == set(room.occupants)
        assert all(room.occupants[o.nick] is o for o in room.by_jid.values())
        for jid in room.by_jid:
            assert room.affiliation(jid) != "outcast"
        assert len(events.records) == len(room.log.records)
