"""Offline storage (XEP-0160): messages to a user with no available resource wait, with a
XEP-0203 delay, until the user next comes online, across a crash and restart too."""

from __future__ import annotations

from xml.etree import ElementTree

from .xmpp import XmppClients
from .xmpp_sync import round_trip, wait_until_stored

NS_DELAY = "{urn:xmpp:delay}delay"


def test_offline_message_is_delivered_on_next_login_with_a_delay(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk")
    alice.send_message("bob@localhost", "while you were out")
    round_trip(alice)
    bob = xmpp.login("bob@localhost/phone")
    message = bob.next_message()
    assert (message["body"], str(message["from"])) == ("while you were out", "alice@localhost/desk")
    delay = message.xml.find(NS_DELAY)
    assert delay is not None and delay.get("from") == "localhost" and delay.get("stamp")


def test_offline_messages_wait_for_available_presence(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk")
    alice.send_message("bob@localhost", "first")
    alice.send_message("bob@localhost/gone", "second, to a resource that left")
    round_trip(alice)
    bob = xmpp.login("bob@localhost/phone", presence=False)
    round_trip(bob)
    assert bob.messages.empty()  # not before initial presence
    bob.run(bob.client.send_presence)
    assert [bob.next_message()["body"] for _ in range(2)] == [
        "first",
        "second, to a resource that left",
    ]


def test_chat_states_alone_are_not_stored(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk")
    composing = alice.run(alice.client.make_message, mto="bob@localhost", mtype="chat")
    composing.append(ElementTree.Element("{http://jabber.org/protocol/chatstates}composing"))
    alice.run(composing.send)
    alice.send_message("bob@localhost", "only this")
    round_trip(alice)
    bob = xmpp.login("bob@localhost/phone")
    assert bob.next_message()["body"] == "only this"
    round_trip(bob)
    assert bob.messages.empty()


def test_offline_messages_survive_a_crash(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk")
    for n in range(3):
        alice.send_message("bob@localhost", f"stored {n}")
    round_trip(alice)
    wait_until_stored(xmpp.broker)
    alice.close()
    xmpp.broker.kill()
    xmpp.broker.start()
    bob = xmpp.login("bob@localhost/phone")
    assert [bob.next_message()["body"] for _ in range(3)] == ["stored 0", "stored 1", "stored 2"]
    bob.close()
    # delivered once: a later login finds nothing waiting
    again = xmpp.login("bob@localhost/tablet")
    round_trip(again)
    assert again.messages.empty()
