"""Jabber IDs: parsing, normalization, limits, and the round trip through str()."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from protocols.xmpp.jid import JID, InvalidJID, parse_jid


@pytest.mark.parametrize(
    ("text", "jid"),
    [
        ("alice@localhost/desk", JID("alice", "localhost", "desk")),
        ("Alice@LocalHost./Desk", JID("alice", "localhost", "Desk")),
        ("localhost", JID("", "localhost", "")),
        ("pubsub.localhost/a/b@c", JID("", "pubsub.localhost", "a/b@c")),
        ("bob@localhost/res with space", JID("bob", "localhost", "res with space")),
    ],
)
def test_valid_jids_parse(text: str, jid: JID) -> None:
    assert parse_jid(text) == jid


@pytest.mark.parametrize(
    "text",
    [
        "",
        "@localhost",
        "alice@",
        "alice@localhost/",
        "a@b@localhost",
        "al ice@localhost",
        "al'ice@localhost",
        "x" * 1024 + "@localhost",
        "alice@" + "d" * 1024,
        "alice@localhost/" + "r" * 1024,
        ".",
    ],
)
def test_invalid_jids_raise(text: str) -> None:
    with pytest.raises(InvalidJID):
        parse_jid(text)


def test_parts_may_be_exactly_the_limit() -> None:
    jid = parse_jid("x" * 1023 + "@localhost/" + "é" * 511)
    assert len(jid.local) == 1023


@given(st.text(max_size=60))
def test_parsing_raises_only_invalid_jid_and_round_trips(text: str) -> None:
    try:
        jid = parse_jid(text)
    except InvalidJID:
        return
    assert parse_jid(str(jid)) == jid
    assert str(parse_jid(str(jid))) == str(jid)


local = st.text(st.characters(blacklist_characters="\"&'/:<>@ \t\r\n\x00"), min_size=1, max_size=20)
domain = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}[a-z0-9]", fullmatch=True)
resource = st.text(min_size=1, max_size=20)


@given(local, domain, resource)
def test_built_jids_round_trip(local: str, domain: str, resource: str) -> None:
    assume(local == local.lower())
    jid = JID(local, domain, resource)
    assert parse_jid(str(jid)) == jid
    assert parse_jid(str(jid.bare)) == jid.bare
    assert jid.bare.is_bare and not jid.is_bare
