"""Bad input to the chat service, each answered with the stanza error XEP-0045 names:
stanzas from non-occupants, malformed configuration forms and admin items, wrongly
addressed messages and presences, and forged senders (a stream error that ends only the
forger's stream; the room carries on)."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest

from .muc import (
    NS_DATA,
    NS_MAM,
    NS_OWNER,
    admin,
    create,
    field,
    iq_error,
    join,
    login,
    next_body,
    next_error,
    no_more_bodies,
    owner_set,
    room_jid,
    say,
)
from .rawxmpp import RawXmpp, stream_error_condition
from .xmpp import USERS, XmppClient, XmppClients

LOBBY = room_jid("lobby")


def _room(xmpp: XmppClients) -> tuple[XmppClient, XmppClient]:
    alice, bob = login(xmpp, "alice"), login(xmpp, "bob")
    create(alice, "lobby", "alice")
    join(bob, LOBBY, "bob")
    return alice, bob


def test_messages_from_non_occupants_are_not_acceptable(xmpp: XmppClients) -> None:
    alice, _ = _room(xmpp)
    carol = login(xmpp, "carol")
    say(carol, LOBBY, "let me in")
    assert next_error(carol)["error"]["condition"] == "not-acceptable"
    carol.send_message(f"{LOBBY}/alice", "psst", "chat")
    assert next_error(carol)["error"]["condition"] == "not-acceptable"
    no_more_bodies(alice)


def test_wrongly_addressed_stanzas(xmpp: XmppClients) -> None:
    alice, bob = _room(xmpp)
    bob.send_message(f"{LOBBY}/alice", "groupchat to one occupant", "groupchat")
    assert next_error(bob)["error"]["condition"] == "bad-request"
    bob.send_message(room_jid("nowhere"), "hello?", "groupchat")
    assert next_error(bob)["error"]["condition"] == "item-not-found"
    bob.send_message(LOBBY, "a normal message to the room", "normal")
    assert next_error(bob)["error"]["condition"] == "not-acceptable"
    errors = bob.watch("presence_error")
    bob.run(bob.client.send_presence, pto=room_jid("other"))  # no nick
    assert errors.get(timeout=10)["error"]["condition"] == "jid-malformed"
    no_more_bodies(alice)


def _form(*fields: ET.Element, kind: str = "submit") -> ET.Element:
    form = ET.Element(f"{{{NS_DATA}}}x", type=kind)
    for item in fields:
        form.append(item)
    return form


@pytest.mark.parametrize(
    ("form", "condition"),
    [
        (_form(kind="form"), "bad-request"),
        (_form(kind="bogus"), "bad-request"),
        (_form(field("FORM_TYPE", "urn:other")), "bad-request"),
        (_form(ET.Element(f"{{{NS_DATA}}}field")), "bad-request"),
        (
            _form(field("muc#roomconfig_roomname", "a"), field("muc#roomconfig_roomname", "b")),
            "bad-request",
        ),
        (_form(field("muc#roomconfig_persistentroom", "maybe")), "bad-request"),
        (_form(field("muc#roomconfig_maxusers", "many")), "not-acceptable"),
        (_form(field("muc#roomconfig_historylength", "-1")), "not-acceptable"),
        (_form(field("muc#roomconfig_whois", "everyone")), "not-acceptable"),
        (_form(field("muc#roomconfig_passwordprotectedroom", "1")), "not-acceptable"),
    ],
)
def test_malformed_configuration_forms(xmpp: XmppClients, form: ET.Element, condition: str) -> None:
    alice, bob = _room(xmpp)
    query = ET.Element(f"{{{NS_OWNER}}}query")
    query.append(form)
    assert iq_error(alice, LOBBY, "set", query) == condition
    say(bob, LOBBY, "the room is as it was")
    assert next_body(alice)["body"] == "the room is as it was"


def test_malformed_admin_and_owner_requests(xmpp: XmppClients) -> None:
    alice, _ = _room(xmpp)
    bad_affiliation = admin(alice, LOBBY, jid="bob@localhost", affiliation="king")
    assert iq_error(alice, LOBBY, "set", bad_affiliation) == "bad-request"
    bad_jid = admin(alice, LOBBY, jid="@@", affiliation="member")
    assert iq_error(alice, LOBBY, "set", bad_jid) == "jid-malformed"
    neither = admin(alice, LOBBY, nick="bob")
    assert iq_error(alice, LOBBY, "set", neither) == "bad-request"
    unknown_nick = admin(alice, LOBBY, nick="nobody", role="visitor")
    assert iq_error(alice, LOBBY, "set", unknown_nick) == "item-not-found"
    last_owner = admin(alice, LOBBY, jid="alice@localhost", affiliation="member")
    assert iq_error(alice, LOBBY, "set", last_owner) == "conflict"
    empty = ET.Element(f"{{{NS_OWNER}}}query")
    assert iq_error(alice, LOBBY, "set", empty) == "bad-request"
    query = ET.Element(f"{{{NS_MAM}}}query")
    form = ET.SubElement(query, f"{{{NS_DATA}}}x", type="submit")
    form.append(field("FORM_TYPE", NS_MAM))
    form.append(field("start", "yesterday"))
    assert iq_error(alice, LOBBY, "set", query) == "bad-request"
    owner_set(alice, LOBBY, _form())  # still configurable


def test_forged_sender_ends_only_the_forgers_stream(xmpp: XmppClients) -> None:
    alice, bob = _room(xmpp)
    broker = xmpp.broker
    for forged in (
        f"<message from='alice@localhost/desk' to='{LOBBY}' type='groupchat'>"
        "<body>forged</body></message>",
        f"<presence from='{LOBBY}/alice' to='{LOBBY}/alice'/>",
    ):
        raw = RawXmpp(broker.host, broker.xmpp_port)
        try:
            ca = broker.data_dir / "tls" / "self-signed.crt"
            assert raw.login("carol", USERS["carol"], "raw", ca=ca) == "carol@localhost/raw"
            raw.send_until_closed(forged.encode())
            assert stream_error_condition(raw.wait_closed()) == "invalid-from"
        finally:
            raw.close()
    say(bob, LOBBY, "still talking")
    assert next_body(alice)["body"] == "still talking"
    no_more_bodies(alice)
