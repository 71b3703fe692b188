"""Rosters: items and requests kept apart, versions, the stored record, roster sets."""

from __future__ import annotations

import pytest
from lxml import etree

from protocols.xmpp.jid import parse_jid
from protocols.xmpp.roster import (
    NS_ROSTER,
    InvalidRosterSet,
    Roster,
    item_element,
    parse_roster_set,
)
from protocols.xmpp.subscription import State

ALICE = parse_jid("alice@localhost")
BOB = parse_jid("bob@localhost")


def _query(*items: str) -> etree._Element:
    return etree.fromstring(f"<query xmlns='{NS_ROSTER}'>{''.join(items)}</query>")


def test_a_request_does_not_list_its_sender() -> None:
    roster = Roster()
    assert roster.set_state(BOB, State(pending_in=True), b"<presence/>") is None
    assert BOB not in roster.items
    assert roster.state(BOB) == State(pending_in=True)
    assert roster.requests == {BOB: b"<presence/>"}


def test_answering_a_request_lists_the_contact_and_bumps_the_version() -> None:
    roster = Roster()
    roster.set_state(BOB, State(pending_in=True), b"<presence/>")
    before = roster.ver
    item = roster.set_state(BOB, State(from_=True))
    assert item is not None and item.state == State(from_=True)
    assert roster.requests == {} and roster.ver != before


def test_the_stored_record_round_trips() -> None:
    roster = Roster()
    roster.set_item(BOB, "Bob", ("friends", "work"))
    roster.set_state(BOB, State(to=True, pending_in=True), b"<presence type='subscribe'/>")
    roster.set_state(parse_jid("carol@localhost"), State(approved=True))
    copy = Roster.decode(roster.encode())
    assert (copy.ver, copy.items, copy.requests) == (roster.ver, roster.items, roster.requests)


def test_a_new_roster_has_a_version_of_its_own() -> None:
    assert Roster().ver != Roster().ver


def test_item_element() -> None:
    roster = Roster()
    roster.set_item(BOB, "Bob", ("friends",))
    item = roster.set_state(BOB, State(from_=True, pending_out=True))
    assert item is not None
    el = item_element(item)
    assert dict(el.attrib) == {
        "jid": "bob@localhost",
        "name": "Bob",
        "subscription": "from",
        "ask": "subscribe",
    }
    assert [g.text for g in el] == ["friends"]


def test_roster_set_parses_one_item() -> None:
    query = _query("<item jid='Bob@localhost' name='B'><group>g</group></item>")
    request = parse_roster_set(query, ALICE)
    assert (request.jid, request.name, request.groups, request.remove) == (BOB, "B", ("g",), False)
    removal = parse_roster_set(_query("<item jid='bob@localhost' subscription='remove'/>"), ALICE)
    assert removal.remove


@pytest.mark.parametrize(
    ("items", "condition"),
    [
        ("", "bad-request"),
        ("<item jid='bob@localhost'/><item jid='carol@localhost'/>", "bad-request"),
        ("<item jid='bob@localhost'><group>g</group><group>g</group></item>", "bad-request"),
        ("<item jid='bob@localhost/phone'/>", "bad-request"),
        ("<item jid='@'/>", "bad-request"),
        ("<item jid='alice@localhost'/>", "not-allowed"),
        ("<item jid='bob@localhost'><group/></item>", "not-acceptable"),
        (f"<item jid='bob@localhost' name='{'n' * 1024}'/>", "not-acceptable"),
    ],
)
def test_roster_set_errors(items: str, condition: str) -> None:
    with pytest.raises(InvalidRosterSet) as caught:
        parse_roster_set(_query(items), ALICE)
    assert caught.value.condition == condition
