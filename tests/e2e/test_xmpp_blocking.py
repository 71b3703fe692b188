"""The blocking command (XEP-0191) with slixmpp: the blocklist, pushes, and messages,
presence and IQs between a user and a JID they blocked."""

from __future__ import annotations

from typing import Any

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ET

from .xmpp import XmppClient, XmppClients, wait
from .xmpp_sync import round_trip, wait_until_stored

PLUGINS = ("xep_0030", "xep_0054", "xep_0191", "xep_0199")
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"


def _login(xmpp: XmppClients, jid: str) -> XmppClient:
    return xmpp.login(jid, plugins=PLUGINS)


def _blocklist(client: XmppClient) -> set[str]:
    jids = client.call(client.client.plugin["xep_0191"].get_blocked_jids)
    return {str(jid) for jid in jids}


def _block(client: XmppClient, jid: str) -> None:
    client.call(client.client.plugin["xep_0191"].block, [jid])


def _unblock(client: XmppClient, jid: str) -> None:
    client.call(client.client.plugin["xep_0191"].unblock, [jid])


def test_block_and_unblock_change_the_list_and_push(xmpp: XmppClients) -> None:
    alice = _login(xmpp, "alice@localhost/desk")
    phone = _login(xmpp, "alice@localhost/phone")
    assert _blocklist(phone) == set()  # the phone asked for the list: it gets pushes
    blocked = phone.watch("blocked")
    unblocked = phone.watch("unblocked")
    _block(alice, "bob@localhost")
    assert _blocklist(alice) == {"bob@localhost"}
    pushed = wait(blocked, "block push")
    assert [item["jid"] for item in pushed["block"]] == ["bob@localhost"]
    _unblock(alice, "bob@localhost")
    assert _blocklist(alice) == set()
    assert [item["jid"] for item in wait(unblocked, "unblock push")["unblock"]] == ["bob@localhost"]


def test_unblock_all(xmpp: XmppClients) -> None:
    alice = _login(xmpp, "alice@localhost/desk")
    _block(alice, "bob@localhost")
    _block(alice, "carol@localhost")
    iq = alice.run(alice.client.make_iq_set)
    iq.append(ET.fromstring("<unblock xmlns='urn:xmpp:blocking'/>"))
    alice.iq(iq)
    assert _blocklist(alice) == set()


def test_messages_stop_while_blocked_and_resume_after(xmpp: XmppClients) -> None:
    alice = _login(xmpp, "alice@localhost/desk")
    bob = _login(xmpp, "bob@localhost/phone")
    _block(alice, "bob@localhost")

    bob.send_message("alice@localhost", "can you hear me?")
    bounced = bob.next_message()
    assert (bounced["type"], bounced["error"]["condition"]) == ("error", "service-unavailable")
    round_trip(alice)
    assert alice.messages.empty()

    alice.send_message("bob@localhost", "talking to a blocked contact")
    refused = alice.next_message()
    assert (refused["type"], refused["error"]["condition"]) == ("error", "not-acceptable")
    assert refused.xml.find(f".//{{{NS_BLOCKING_ERRORS}}}blocked") is not None
    round_trip(bob)
    assert bob.messages.empty()

    _unblock(alice, "bob@localhost")
    bob.send_message("alice@localhost", "and now?")
    assert alice.next_message()["body"] == "and now?"


def test_presence_from_a_blocked_contact_is_dropped(xmpp: XmppClients) -> None:
    alice = _login(xmpp, "alice@localhost/desk")
    bob = _login(xmpp, "bob@localhost/phone")
    _block(alice, "bob@localhost")
    gone = _presence_from(bob, "alice@localhost/desk")
    assert gone["type"] == "unavailable"  # alice vanishes for bob
    _drain(alice.presences)
    bob.run(bob.client.send_presence, pto="alice@localhost/desk", pstatus="see me?")
    round_trip(bob)
    round_trip(alice)
    assert not [p for p in _drain(alice.presences) if p["from"].bare == "bob@localhost"]
    _unblock(alice, "bob@localhost")
    bob.run(bob.client.send_presence, pto="alice@localhost/desk", pstatus="and now?")
    assert _presence_from(alice, "bob@localhost/phone")["status"] == "and now?"


def test_iq_from_a_blocked_contact_gets_service_unavailable(xmpp: XmppClients) -> None:
    alice = _login(xmpp, "alice@localhost/desk")
    bob = _login(xmpp, "bob@localhost/phone")
    _block(alice, "bob@localhost")
    with pytest.raises(IqError) as refused:
        bob.call(bob.client.plugin["xep_0054"].get_vcard, "alice@localhost")
    assert refused.value.iq["error"]["condition"] == "service-unavailable"
    with pytest.raises(IqError) as bounced:
        bob.call(bob.client.plugin["xep_0199"].ping, "alice@localhost/desk")
    assert bounced.value.iq["error"]["condition"] == "service-unavailable"


def test_blocklist_survives_a_restart(xmpp: XmppClients) -> None:
    alice = _login(xmpp, "alice@localhost/desk")
    _block(alice, "bob@localhost")
    wait_until_stored(xmpp.broker)
    xmpp.broker.kill()
    xmpp.broker.start()
    alice = _login(xmpp, "alice@localhost/desk")
    assert _blocklist(alice) == {"bob@localhost"}
    bob = _login(xmpp, "bob@localhost/phone")
    bob.send_message("alice@localhost", "still blocked?")
    assert bob.next_message()["error"]["condition"] == "service-unavailable"


def _presence_from(client: XmppClient, jid: str) -> Any:
    while True:
        presence = client.next_presence()
        if str(presence["from"]) == jid:
            return presence


def _drain(events: Any) -> list[Any]:
    drained = []
    while not events.empty():
        drained.append(events.get_nowait())
    return drained
