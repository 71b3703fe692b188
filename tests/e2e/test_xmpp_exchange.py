"""The `xmpp` exchange (SPEC "Where protocols meet" item 6): a publish in another protocol
with a JID as routing key reaches that XMPP user as a chat message from the publisher."""

from __future__ import annotations

from .xmpp import XmppClients
from .xmpp_sync import publish, round_trip


def test_pika_publish_to_a_bare_jid_reaches_the_user(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk")
    publish(xmpp.broker, "xmpp", "alice@localhost", "héllo from AMQP".encode(), user="bob")
    message = alice.next_message()
    assert message["type"] == "chat"
    assert (message["body"], str(message["from"])) == ("héllo from AMQP", "bob@localhost")


def test_pika_publish_to_a_full_jid_reaches_that_resource(xmpp: XmppClients) -> None:
    desk = xmpp.login("alice@localhost/desk")
    phone = xmpp.login("alice@localhost/phone")
    publish(xmpp.broker, "xmpp", "alice@localhost/phone", b"to the phone", user="bob")
    assert phone.next_message()["body"] == "to the phone"
    round_trip(desk)
    assert desk.messages.empty()


def test_publish_to_an_offline_user_is_stored_across_a_crash(xmpp: XmppClients) -> None:
    publish(xmpp.broker, "xmpp", "alice@localhost", b"while you were out", user="carol")
    xmpp.broker.kill()
    xmpp.broker.start()
    alice = xmpp.login("alice@localhost/desk")
    message = alice.next_message()
    assert (message["body"], str(message["from"])) == ("while you were out", "carol@localhost")
    assert message.xml.find("{urn:xmpp:delay}delay") is not None
