"""SPEC "Where protocols meet", item 4 with real clients: pubsub nodes are topics.  paho
MQTT, pika and the native WebSocket protocol publish and subscribe on the same topics
as slixmpp's pubsub, with the payload mapping of the urn:broker:payload:0 wrapper."""

from __future__ import annotations

import base64

import pika

from .amqp import Consumer, parameters
from .clients import Clients
from .wsnative import NativeClients, native  # noqa: F401 (the fixture)
from .xmpp import USERS, XmppClients, wait
from .xmpp_pubsub import NS_PAYLOAD, SERVICE, item_of, login, payload, pubsub, refused
from .xmpp_sync import round_trip

ALICE = ("alice", USERS["alice"])


def _data(el) -> tuple[str | None, str | None, str]:
    assert el.tag == f"{{{NS_PAYLOAD}}}data", el.tag
    return el.get("content-type"), el.get("encoding"), el.text or ""


def test_an_mqtt_publish_reaches_node_and_filter_subscribers(
    xmpp: XmppClients, clients: Clients
) -> None:
    exact = login(xmpp, "alice@localhost/desk")
    wildcard = login(xmpp, "bob@localhost/phone")
    exact_events, wildcard_events = exact.watch("pubsub_publish"), wildcard.watch("pubsub_publish")
    exact.call(pubsub(exact).subscribe, SERVICE, "sensors/room1/temp")
    wildcard.call(pubsub(wildcard).subscribe, SERVICE, "sensors/+/temp")
    mqtt = clients.paho(xmpp.broker, username="carol", password=USERS["carol"])
    mqtt.publish("sensors/room1/temp", b"21.5", qos=1)
    mqtt.publish("sensors/room2/temp", b"\xff\x00", qos=1)
    node, item_id, el = item_of(wait(exact_events, "notification"))
    assert node == "sensors/room1/temp" and item_id
    assert _data(el) == (None, "utf-8", "21.5")
    seen = [item_of(wait(wildcard_events, "notification")) for _ in range(2)]
    assert [(node, _data(el)) for node, _, el in seen] == [
        ("sensors/room1/temp", (None, "utf-8", "21.5")),
        ("sensors/room2/temp", (None, "base64", base64.b64encode(b"\xff\x00").decode())),
    ]
    round_trip(exact)
    assert exact_events.empty()  # room2 is not the exact node's topic


def test_a_retained_mqtt_value_is_the_nodes_item_and_clearing_retracts_it(
    xmpp: XmppClients, clients: Clients
) -> None:
    mqtt = clients.paho(xmpp.broker, username="carol", password=USERS["carol"])
    mqtt.publish("sensors/hall/temp", b"19.0", qos=1, retain=True)
    alice = login(xmpp, "alice@localhost/desk")
    items = alice.call(pubsub(alice).get_items, SERVICE, "sensors/hall/temp")["pubsub"]["items"]
    found = [(item["id"], _data(item["payload"])) for item in items]
    assert len(found) == 1 and found[0][1] == (None, "utf-8", "19.0")
    retracts = alice.watch("pubsub_retract")
    last = alice.watch("pubsub_publish")
    alice.call(pubsub(alice).subscribe, SERVICE, "sensors/+/temp")
    node, item_id, _ = item_of(wait(last, "last published item"))
    assert (node, item_id) == ("sensors/hall/temp", found[0][0])
    mqtt.publish("sensors/hall/temp", b"", qos=1, retain=True)  # clears the retained value
    retraction = wait(retracts, "retraction")["pubsub_event"]["items"]
    assert retraction["node"] == "sensors/hall/temp"
    assert [r["id"] for r in retraction] == [found[0][0]]
    items = alice.call(pubsub(alice).get_items, SERVICE, "sensors/hall/temp")["pubsub"]["items"]
    assert list(items) == []


def test_an_item_publish_reaches_mqtt_and_amqp_as_a_retained_xml_body(
    xmpp: XmppClients, clients: Clients
) -> None:
    mqtt = clients.paho(xmpp.broker, username="carol", password=USERS["carol"])
    mqtt.subscribe(("cmd/#", 1))
    with pika.BlockingConnection(parameters(xmpp.broker, ALICE)) as connection:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, "amq.topic", "cmd.#")
        consumer = Consumer(channel, queue, auto_ack=True)
        alice = login(xmpp, "alice@localhost/desk")
        light = payload("{urn:example:light}state", "on")
        alice.call(pubsub(alice).publish, SERVICE, "cmd/light", id="state1", payload=light)
        received = mqtt.get()
        assert received.topic == "cmd/light"
        assert received.payload == b'<state xmlns="urn:example:light">on</state>'
        (delivery,) = consumer.wait(1)
        assert delivery.method.routing_key == "cmd.light"
        assert delivery.body == received.payload
        assert delivery.properties.content_type == "application/xml"
        assert delivery.properties.message_id == "state1"
    # it is the topic's retained value now: a new MQTT subscriber gets it at once
    late = clients.paho(xmpp.broker, username="bob", password=USERS["bob"])
    late.subscribe(("cmd/light", 0))
    retained = late.get()
    assert retained.retain and retained.payload == received.payload
    # and a wrapped payload arrives unwrapped, with its content type
    wrapped = payload(f"{{{NS_PAYLOAD}}}data", "plain words")
    wrapped.set("content-type", "text/plain")
    alice.call(pubsub(alice).publish, SERVICE, "cmd/light", payload=wrapped)
    assert mqtt.get().payload == b"plain words"


def test_a_ws_native_publish_reaches_a_pubsub_subscriber(
    xmpp: XmppClients,
    native: NativeClients,  # noqa: F811
) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    events = alice.watch("pubsub_publish")
    alice.call(pubsub(alice).subscribe, SERVICE, "ws/+/state")
    client = native(xmpp.broker, basic_auth=ALICE)
    client.ok(
        "publish",
        topic="ws/door/state",
        payload='{"open": true}',
        properties={"content_type": "application/json"},
    )
    node, _, el = item_of(wait(events, "notification"))
    assert node == "ws/door/state"
    assert _data(el) == ("application/json", "utf-8", '{"open": true}')


def test_a_pubsub_subscriber_sees_its_own_and_others_item_publishes_once(
    xmpp: XmppClients,
) -> None:
    alice = login(xmpp, "alice@localhost/desk")
    events = alice.watch("pubsub_publish")
    alice.call(pubsub(alice).subscribe, SERVICE, "echo/test")
    alice.call(pubsub(alice).publish, SERVICE, "echo/test", id="once", payload=payload())
    assert item_of(wait(events, "notification"))[1] == "once"
    round_trip(alice)
    assert events.empty()


def test_topic_acls_apply_to_pubsub(broker_factory) -> None:
    from .xmpp import XmppClients as Pool
    from .xmpp import xmpp_config

    cfg = xmpp_config()
    cfg["acl"] = [
        {"user": "*", "topic": "private/#", "action": "all", "allow": False},
    ]
    pool = Pool(broker_factory(cfg))
    try:
        alice = login(pool, "alice@localhost/desk")
        assert refused(lambda: alice.call(pubsub(alice).subscribe, SERVICE, "private/x")) == (
            "forbidden",
            "",
        )
        assert refused(
            lambda: alice.call(pubsub(alice).publish, SERVICE, "private/x", payload=payload())
        ) == ("forbidden", "")
        alice.call(pubsub(alice).subscribe, SERVICE, "public/x")
    finally:
        pool.close_all()
