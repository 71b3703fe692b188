"""Message carbons (XEP-0280): a user's carbons-enabled resources see the chats the user's
other resources send and receive."""

from __future__ import annotations

from xml.etree import ElementTree

from .xmpp import PLUGINS, XmppClient, XmppClients, wait
from .xmpp_sync import round_trip

CARBON_PLUGINS = (*PLUGINS, "xep_0280")


def with_carbons(xmpp: XmppClients, jid: str) -> XmppClient:
    client = xmpp.login(jid, plugins=CARBON_PLUGINS)
    client.call(client.client.plugin["xep_0280"].enable)
    return client


def test_carbons_of_received_and_sent_messages(xmpp: XmppClients) -> None:
    desk = with_carbons(xmpp, "alice@localhost/desk")
    phone = with_carbons(xmpp, "alice@localhost/phone")
    bob = xmpp.login("bob@localhost/pc")
    received = phone.watch("carbon_received")
    sent = phone.watch("carbon_sent")

    bob.send_message("alice@localhost/desk", "to your desk")
    assert desk.next_message()["body"] == "to your desk"
    copy = wait(received, "received carbon")
    assert str(copy["from"]) == "alice@localhost"
    original = copy["carbon_received"]
    assert (original["body"], str(original["from"])) == ("to your desk", "bob@localhost/pc")

    desk.send_message("bob@localhost", "from my desk")
    assert bob.next_message()["body"] == "from my desk"
    original = wait(sent, "sent carbon")["carbon_sent"]
    assert (original["body"], str(original["to"])) == ("from my desk", "bob@localhost")


def test_message_to_the_bare_jid_is_copied_to_resources_that_did_not_get_it(
    xmpp: XmppClients,
) -> None:
    desk = with_carbons(xmpp, "alice@localhost/desk")
    phone = with_carbons(xmpp, "alice@localhost/phone")
    phone.run(phone.client.send_presence, ppriority=-1)  # bare-JID messages go to desk only
    round_trip(phone)
    received = phone.watch("carbon_received")
    bob = xmpp.login("bob@localhost/pc")
    bob.send_message("alice@localhost", "to alice")
    assert desk.next_message()["body"] == "to alice"
    assert wait(received, "received carbon")["carbon_received"]["body"] == "to alice"


def test_private_and_disabled_resources_get_no_copies(xmpp: XmppClients) -> None:
    desk = with_carbons(xmpp, "alice@localhost/desk")
    phone = with_carbons(xmpp, "alice@localhost/phone")
    tablet = xmpp.login("alice@localhost/tablet", plugins=CARBON_PLUGINS)  # never enabled
    bob = xmpp.login("bob@localhost/pc")
    sent = phone.watch("carbon_sent")
    tablet_sent = tablet.watch("carbon_sent")

    private = desk.run(desk.client.make_message, mto="bob@localhost", mbody="private", mtype="chat")
    private.append(ElementTree.Element("{urn:xmpp:carbons:2}private"))
    desk.run(private.send)
    assert bob.next_message()["body"] == "private"
    desk.send_message("bob@localhost", "public")
    assert bob.next_message()["body"] == "public"
    assert wait(sent, "sent carbon")["carbon_sent"]["body"] == "public"  # not "private"

    phone.call(phone.client.plugin["xep_0280"].disable)
    desk.send_message("bob@localhost", "after disable")
    assert bob.next_message()["body"] == "after disable"
    round_trip(phone)
    round_trip(tablet)
    assert sent.empty() and tablet_sent.empty()
