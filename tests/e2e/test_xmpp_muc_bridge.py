"""Rooms are topics (SPEC "Where protocols meet", item 5): a groupchat body in room
``lobby`` is published on ``muc/lobby`` with the nick as a user property (AMQP header), and
a publish on ``muc/lobby`` from MQTT, AMQP or the native WebSocket protocol appears in the
room as groupchat from the publisher's user name, each message crossing once."""

from __future__ import annotations

import pytest
from slixmpp.exceptions import IqError

from . import amqp
from .brokers import BrokerProcess
from .mqtt5 import Paho5
from .muc import create, join, login, next_body, no_more_bodies, room_jid, say
from .wsnative import NativeClients
from .xmpp import USERS, XmppClients

LOBBY = room_jid("lobby")


def _mqtt(broker: BrokerProcess, user: str) -> Paho5:
    client = Paho5(broker.host, broker.mqtt_port)
    client.client.username_pw_set(user, USERS[user])
    assert client.connect().reason == 0
    return client


def _creds(user: str) -> tuple[str, str]:
    return (user, USERS[user])


def test_groupchat_reaches_an_mqtt5_subscriber_with_the_nick(xmpp: XmppClients) -> None:
    subscriber = _mqtt(xmpp.broker, "carol")
    try:
        assert subscriber.subscribe("muc/lobby", 1) == [1]
        alice, bob = login(xmpp, "alice"), login(xmpp, "bob")
        create(alice, "lobby", "alice")
        join(bob, LOBBY, "robert")
        say(bob, LOBBY, "hello, MQTT")
        message = subscriber.get()
        assert (message.topic, message.payload) == ("muc/lobby", b"hello, MQTT")
        assert ("nick", "robert") in message.properties.UserProperty
        for client in (alice, bob):  # reflected once, not brought back from the topic
            assert next_body(client)["body"] == "hello, MQTT"
            no_more_bodies(client)
    finally:
        subscriber.close()


def test_mqtt_publish_appears_in_the_room_once(xmpp: XmppClients) -> None:
    alice, bob = login(xmpp, "alice"), login(xmpp, "bob")
    create(alice, "lobby", "alice")
    join(bob, LOBBY, "bob")
    listener, device = _mqtt(xmpp.broker, "alice"), _mqtt(xmpp.broker, "carol")
    try:
        assert listener.subscribe("muc/lobby", 1) == [1]
        device.publish("muc/lobby", "temperature alert: 31 °C", qos=1)
        for client in (alice, bob):
            message = next_body(client)
            assert (str(message["from"]), message["body"]) == (
                f"{LOBBY}/carol",
                "temperature alert: 31 °C",
            )
        assert listener.get().payload == "temperature alert: 31 °C".encode()
        assert listener.messages.empty()
        no_more_bodies(alice)
    finally:
        listener.close()
        device.close()
    carol = login(xmpp, "carol")
    _, _, _, history = join(carol, LOBBY, "carol")
    assert [(str(m["from"]), m["body"]) for m in history] == [
        (f"{LOBBY}/carol", "temperature alert: 31 °C")
    ]


def test_amqp_consumer_gets_room_messages_and_amqp_publishes_reach_the_room(
    xmpp: XmppClients,
) -> None:
    alice = login(xmpp, "alice")
    create(alice, "lobby", "alice")
    pika = amqp.PikaClients(xmpp.broker)
    try:
        channel = pika.channel(user=_creds("bob"))
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, "amq.topic", routing_key="muc.#")
        consumer = amqp.Consumer(channel, queue, auto_ack=True)
        say(alice, LOBBY, "to the services")
        delivery = consumer.wait(1)[0]
        assert (delivery.method.routing_key, delivery.body) == ("muc.lobby", b"to the services")
        assert delivery.properties.headers == {"nick": "alice"}
        channel.basic_publish("amq.topic", "muc.lobby", b"from a service")
        assert next_body(alice)["body"] == "to the services"
        message = next_body(alice)
        assert (str(message["from"]), message["body"]) == (f"{LOBBY}/bob", "from a service")
    finally:
        pika.close_all()


def test_a_ws_native_client_joins_the_flow(xmpp: XmppClients, native: NativeClients) -> None:
    alice = login(xmpp, "alice")
    create(alice, "lobby", "alice")
    browser = native(xmpp.broker, basic_auth=_creds("bob"))
    browser.ok("subscribe", topic="muc/lobby")
    say(alice, LOBBY, "hello browser")
    frame = browser.message()
    assert (frame["topic"], frame["payload"]) == ("muc/lobby", "hello browser")
    assert frame["properties"]["headers"] == {"nick": "alice"}
    browser.ok("publish", topic="muc/lobby", payload="hello room", qos=1)
    assert next_body(alice)["body"] == "hello browser"
    message = next_body(alice)
    assert (str(message["from"]), message["body"]) == (f"{LOBBY}/bob", "hello room")
    assert browser.message()["payload"] == "hello room"  # its own publish, once


def test_publish_to_a_room_that_does_not_exist_is_dropped(xmpp: XmppClients) -> None:
    device = _mqtt(xmpp.broker, "carol")
    try:
        device.publish("muc/nowhere", "anyone?", qos=1)
    finally:
        device.close()
    alice = login(xmpp, "alice")
    with pytest.raises(IqError) as refused:
        alice.call(alice.client.plugin["xep_0030"].get_info, jid=room_jid("nowhere"))
    assert refused.value.condition == "item-not-found"


def test_payloads_xml_cannot_carry_stay_out_of_the_room(xmpp: XmppClients) -> None:
    alice = login(xmpp, "alice")
    create(alice, "lobby", "alice")
    device = _mqtt(xmpp.broker, "carol")
    try:
        device.publish("muc/lobby", b"\xff\xfe not UTF-8", qos=1)
        device.publish("muc/lobby", "bell \x07", qos=1)
        device.publish("muc/lobby", "<b>markup</b> & text", qos=1)
    finally:
        device.close()
    assert next_body(alice)["body"] == "<b>markup</b> & text"
    no_more_bodies(alice)
