"""MQTT 5 delivery: session and message expiry, will delay, topic aliases both ways,
Receive Maximum and Maximum Packet Size."""

from __future__ import annotations

import asyncio

import pytest

from .brokers import BrokerProcess, skip_on_mosquitto
from .clients import Clients
from .mqtt5 import (
    TIMEOUT,
    Paho5,
    Publish5,
    RawClient5,
    Will5,
    ack5,
    disconnect5,
    flush5,
    paho5,
    paho5_unconnected,
    publish5,
    raw5,
    sub_options,
    wait_out,
)
from .rawmqtt import PUBACK

TOPIC = "v5/t"
LONG = 300  # seconds: a session or message that must outlive the test


# -- session expiry -----------------------------------------------------------------------


@pytest.mark.mqtt5("session-expiry")
def test_session_kept_within_its_expiry_interval(broker: BrokerProcess, clients: Clients) -> None:
    sub = paho5(clients, broker, "keeper", SessionExpiryInterval=LONG)
    assert sub.subscribe(TOPIC, 1) == [1]
    sub.disconnect()
    pub = paho5(clients, broker, "pub")
    pub.publish(TOPIC, b"queued", qos=1)
    sub = paho5_unconnected(clients, broker, "keeper")
    connack = sub.connect(clean_start=False, SessionExpiryInterval=LONG)
    assert (connack.reason, connack.session_present) == (0, True)
    assert sub.get().payload == b"queued"
    flush5(sub, pub, TOPIC)


@pytest.mark.mqtt5("session-expiry")
def test_session_expiry_zero_ends_the_session_at_disconnect(
    broker: BrokerProcess, clients: Clients
) -> None:
    sub = paho5(clients, broker, "short-lived")  # no Session Expiry Interval: 0
    assert sub.subscribe(TOPIC, 1) == [1]
    sub.disconnect()
    again = paho5_unconnected(clients, broker, "short-lived")
    assert again.connect(clean_start=False).session_present is False


@pytest.mark.mqtt5("session-expiry")
def test_session_gone_after_its_expiry_interval(broker: BrokerProcess, clients: Clients) -> None:
    """Session Expiry Interval 1 s, the smallest there is. Reconnecting early would resume
    (and so restart) the session, so this waits the interval out; the margin covers a
    broker that checks expiry once a second."""
    sub = paho5(clients, broker, "expiring", SessionExpiryInterval=1)
    assert sub.subscribe(TOPIC, 1) == [1]
    sub.disconnect()
    wait_out(2.5)
    sub = paho5_unconnected(clients, broker, "expiring")
    connack = sub.connect(clean_start=False, SessionExpiryInterval=LONG)
    assert (connack.reason, connack.session_present) == (0, False)
    # and its subscription went with it
    pub = paho5(clients, broker, "pub")
    pub.publish(TOPIC, b"nobody", qos=1)
    assert sub.subscribe("v5/marker", 1) == [1]
    flush5(sub, pub, "v5/marker")


@pytest.mark.mqtt5("session-expiry")
def test_disconnect_may_shorten_session_expiry(broker: BrokerProcess, clients: Clients) -> None:
    sub = paho5(clients, broker, "changes-mind", SessionExpiryInterval=LONG)
    assert sub.subscribe(TOPIC, 1) == [1]
    sub.disconnect(SessionExpiryInterval=0)
    again = paho5_unconnected(clients, broker, "changes-mind")
    assert again.connect(clean_start=False).session_present is False


# -- message expiry -----------------------------------------------------------------------


@pytest.mark.mqtt5("message-expiry")
def test_expired_message_not_delivered_to_a_reconnecting_session(
    broker: BrokerProcess, clients: Clients
) -> None:
    """Message Expiry Interval 1 s (the smallest) on a message queued for an offline
    session: waiting the interval out is the behaviour under test. A message with a long
    interval, queued after it, must still arrive, with its remaining interval."""
    sub = paho5(clients, broker, "offline-sub", SessionExpiryInterval=LONG)
    assert sub.subscribe(TOPIC, 1) == [1]
    sub.disconnect()
    pub = paho5(clients, broker, "pub")
    pub.publish(TOPIC, b"short-lived", qos=1, MessageExpiryInterval=1)
    pub.publish(TOPIC, b"long-lived", qos=1, MessageExpiryInterval=LONG)
    wait_out(2.5)
    sub = paho5_unconnected(clients, broker, "offline-sub")
    assert sub.connect(clean_start=False, SessionExpiryInterval=LONG).session_present
    msg = sub.get()
    assert msg.payload == b"long-lived"
    remaining = msg.properties.MessageExpiryInterval
    assert 0 < remaining < LONG, remaining  # counted down while queued
    flush5(sub, pub, TOPIC)


@pytest.mark.mqtt5("message-expiry")
def test_message_expiry_forwarded_to_online_subscriber(
    broker: BrokerProcess, clients: Clients
) -> None:
    sub = raw5(clients, broker)
    assert sub.connect5("online").reason == 0
    assert sub.subscribe5([(TOPIC, sub_options(0))]) == [0]
    pub = paho5(clients, broker, "pub")
    pub.publish(TOPIC, b"expiring", qos=1, MessageExpiryInterval=LONG)
    pub.publish(TOPIC, b"forever", qos=1)
    first, second = sub.get(), sub.get()
    assert first.payload == b"expiring"
    assert 0 < first.props["message_expiry_interval"] <= LONG
    assert second.payload == b"forever"
    assert "message_expiry_interval" not in second.props


@pytest.mark.mqtt5("message-expiry")
def test_expired_retained_message_not_sent(broker: BrokerProcess, clients: Clients) -> None:
    pub = paho5(clients, broker, "pub")
    pub.publish("v5/retained", b"stale", qos=1, retain=True, MessageExpiryInterval=1)
    pub.publish("v5/retained2", b"fresh", qos=1, retain=True, MessageExpiryInterval=LONG)
    wait_out(2.5)  # let the first one expire: the behaviour under test
    sub = paho5(clients, broker, "late")
    assert sub.subscribe("v5/retained", 1) == [1]
    assert sub.subscribe("v5/retained2", 1) == [1]
    msg = sub.get()
    assert msg.payload == b"fresh" and msg.retain
    flush5(sub, pub, "v5/retained")


# -- will delay ---------------------------------------------------------------------------


@pytest.mark.mqtt5("will-delay")
def test_will_delayed_by_its_interval(broker: BrokerProcess, clients: Clients) -> None:
    """Will Delay Interval 1 s: a marker published right after the drop arrives before
    the will (the second of delay is the behaviour under test)."""
    watcher = paho5(clients, broker, "watcher")
    assert watcher.subscribe("v5/will/#", 1) == [1]
    raw = raw5(clients, broker)
    will = Will5("v5/will/gone", b"bye", qos=1, props={"will_delay_interval": 1})
    assert raw.connect5("mortal", will=will, props={"session_expiry_interval": LONG}).reason == 0
    raw.send(disconnect5(0x04))  # Disconnect with Will Message
    raw.wait_closed()
    watcher.publish("v5/will/marker", b"marker", qos=1)
    assert watcher.get().payload == b"marker"
    msg = watcher.get()
    assert (msg.topic, msg.payload) == ("v5/will/gone", b"bye")


@pytest.mark.mqtt5("will-delay")
def test_will_cancelled_by_reconnect_within_delay(broker: BrokerProcess, clients: Clients) -> None:
    watcher = paho5(clients, broker, "watcher")
    assert watcher.subscribe("v5/will/#", 1) == [1]
    raw = raw5(clients, broker)
    will = Will5("v5/will/gone", b"bye", qos=1, props={"will_delay_interval": LONG})
    assert raw.connect5("phoenix", will=will, props={"session_expiry_interval": LONG}).reason == 0
    raw.close()  # abrupt: the will is due, LONG seconds from now
    back = raw5(clients, broker)
    assert back.connect5("phoenix", clean=False, props={"session_expiry_interval": 0}).reason == 0
    back.send(disconnect5(0))  # a normal disconnect: no will, session over
    back.wait_closed()
    flush5(watcher, watcher, "v5/will/marker")


@pytest.mark.mqtt5("will-delay")
@skip_on_mosquitto("2.0.11 drops a delayed will when the session ends first")
def test_will_sent_when_session_ends_before_delay(broker: BrokerProcess, clients: Clients) -> None:
    watcher = paho5(clients, broker, "watcher")
    assert watcher.subscribe("v5/will/#", 1) == [1]
    raw = raw5(clients, broker)
    will = Will5("v5/will/gone", b"session over", qos=1, props={"will_delay_interval": LONG})
    assert raw.connect5("brief", will=will).reason == 0  # session expiry 0
    raw.close()
    msg = watcher.get()
    assert (msg.topic, msg.payload) == ("v5/will/gone", b"session over")


# -- topic aliases ------------------------------------------------------------------------


@pytest.mark.mqtt5("topic-alias-in")
def test_topic_alias_from_the_client(broker: BrokerProcess, clients: Clients) -> None:
    sub = paho5(clients, broker, "sub")
    assert sub.subscribe("v5/alias/#", 1) == [1]
    raw = raw5(clients, broker)
    connack = raw.connect5("aliaser")
    assert connack.props.get("topic_alias_maximum", 0) >= 2
    raw.send(publish5("v5/alias/one", b"set", qos=1, packet_id=1, props={"topic_alias": 1}))
    raw.send(publish5("", b"use", qos=1, packet_id=2, props={"topic_alias": 1}))
    raw.send(publish5("v5/alias/two", b"reset", qos=1, packet_id=3, props={"topic_alias": 1}))
    raw.send(publish5("", b"use again", qos=1, packet_id=4, props={"topic_alias": 1}))
    for pid in (1, 2, 3, 4):
        assert raw.expect(PUBACK).packet_id == pid
    got = [(m.topic, m.payload) for m in (sub.get() for _ in range(4))]
    assert got == [
        ("v5/alias/one", b"set"),
        ("v5/alias/one", b"use"),
        ("v5/alias/two", b"reset"),
        ("v5/alias/two", b"use again"),
    ]
    # the alias is the client's own: another connection does not share it
    other = raw5(clients, broker)
    assert other.connect5("other").reason == 0
    other.send(publish5("", b"x", props={"topic_alias": 1}))
    assert other.expect_disconnect().reason == 0x82


@pytest.mark.mqtt5("topic-alias-in")
def test_topic_alias_with_paho(broker: BrokerProcess, clients: Clients) -> None:
    sub = paho5(clients, broker, "sub")
    assert sub.subscribe("v5/alias/paho", 1) == [1]
    pub = paho5(clients, broker, "pub")
    pub.publish("v5/alias/paho", b"first", qos=1, TopicAlias=3)
    pub.publish("", b"second", qos=1, TopicAlias=3)
    assert [(m.topic, m.payload) for m in (sub.get(), sub.get())] == [
        ("v5/alias/paho", b"first"),
        ("v5/alias/paho", b"second"),
    ]


@pytest.mark.mqtt5("topic-alias-out")
@skip_on_mosquitto("2.0.11 never assigns topic aliases to clients")
def test_topic_alias_to_the_client(broker: BrokerProcess, clients: Clients) -> None:
    sub = raw5(clients, broker)
    assert sub.connect5("alias-taker", props={"topic_alias_maximum": 4}).reason == 0
    assert sub.subscribe5([("v5/out/#", sub_options(0))]) == [0]
    pub = paho5(clients, broker, "pub")
    for i in range(3):
        pub.publish("v5/out/a", f"a{i}".encode(), qos=1)
    first, second, third = sub.get(), sub.get(), sub.get()
    alias = first.props.get("topic_alias")
    assert first.topic == "v5/out/a" and alias is not None and 1 <= alias <= 4
    for later in (second, third):
        assert (later.topic, later.props.get("topic_alias")) == ("", alias)
    assert [m.payload for m in (first, second, third)] == [b"a0", b"a1", b"a2"]


@pytest.mark.mqtt5("topic-alias-out")
def test_no_topic_alias_to_a_client_that_allows_none(
    broker: BrokerProcess, clients: Clients
) -> None:
    sub = raw5(clients, broker)
    assert sub.connect5("no-aliases").reason == 0  # Topic Alias Maximum absent: 0
    assert sub.subscribe5([("v5/out/#", sub_options(0))]) == [0]
    pub = paho5(clients, broker, "pub")
    for i in range(3):
        pub.publish("v5/out/b", f"b{i}".encode(), qos=1)
    for i in range(3):
        msg = sub.get()
        assert (msg.topic, msg.payload) == ("v5/out/b", f"b{i}".encode())
        assert "topic_alias" not in msg.props


@pytest.mark.mqtt5("topic-alias-out")
def test_gmqtt_receives_aliased_topics(broker: BrokerProcess) -> None:
    """gmqtt resolves aliases itself (paho-mqtt does not): with Topic Alias Maximum 2
    every message still arrives with its full topic, whatever aliases the broker chooses."""
    gmqtt = pytest.importorskip("gmqtt")
    topics = ["v5/out/a", "v5/out/b", "v5/out/c", "v5/out/a", "v5/out/c", "v5/out/b"]

    async def main() -> list[tuple[str, bytes]]:
        received: asyncio.Queue = asyncio.Queue()
        subscribed = asyncio.Event()

        def on_message(_client, topic, payload, _qos, _properties):  # noqa: ANN001, ANN202
            received.put_nowait((topic, payload))
            return 0

        sub = gmqtt.Client("gmqtt-aliases", topic_alias_maximum=2)
        sub.on_message = on_message
        sub.on_subscribe = lambda *_args: subscribed.set()
        pub = gmqtt.Client("gmqtt-pub")
        await sub.connect(broker.host, broker.mqtt_port, version=gmqtt.constants.MQTTv50)
        await pub.connect(broker.host, broker.mqtt_port, version=gmqtt.constants.MQTTv50)
        try:
            sub.subscribe("v5/out/#", qos=0)
            async with asyncio.timeout(TIMEOUT):
                await subscribed.wait()
            for i, topic in enumerate(topics):
                pub.publish(topic, f"{i}".encode(), qos=1)
            async with asyncio.timeout(TIMEOUT):
                return [await received.get() for _ in topics]
        finally:
            await pub.disconnect()
            await sub.disconnect()

    got = asyncio.run(main())
    assert got == [(t, f"{i}".encode()) for i, t in enumerate(topics)]


# -- flow control -------------------------------------------------------------------------


def receive_maximum_burst(
    broker: BrokerProcess, clients: Clients
) -> tuple[RawClient5, Paho5, list[Publish5]]:
    """A subscriber with Receive Maximum 5 that acks nothing and 10 QoS 1 messages
    published to it: exactly 5 arrive (a ping round trip shows no sixth was sent).
    Returns (subscriber, publisher, the 5 unacked messages)."""
    sub = raw5(clients, broker)
    assert sub.connect5("slow", props={"receive_maximum": 5}).reason == 0
    assert sub.subscribe5([("v5/burst", sub_options(1))]) == [1]
    pub = paho5(clients, broker, "pub")
    for i in range(10):
        pub.publish("v5/burst", f"m{i}".encode(), qos=1)
    window = [sub.get() for _ in range(5)]
    assert [m.payload for m in window] == [f"m{i}".encode() for i in range(5)]
    assert all(m.qos == 1 for m in window)
    assert sub.publishes_before_pong() == [], "more than 5 in flight"
    return sub, pub, window


@pytest.mark.mqtt5("receive-maximum")
def test_receive_maximum_respected_under_a_burst(broker: BrokerProcess, clients: Clients) -> None:
    sub, pub, window = receive_maximum_burst(broker, clients)
    for msg in window:
        sub.send(ack5(PUBACK, msg.packet_id))
    rest = []
    for _ in range(5):
        msg = sub.get()
        sub.send(ack5(PUBACK, msg.packet_id))
        rest.append(msg.payload)
    assert rest == [f"m{i}".encode() for i in range(5, 10)]
    flush5(sub, pub, "v5/burst")


@pytest.mark.mqtt5("receive-maximum")
@skip_on_mosquitto("2.0.11 sends past Receive Maximum once the first PUBACK comes back")
def test_receive_maximum_each_ack_releases_one(broker: BrokerProcess, clients: Clients) -> None:
    sub, pub, window = receive_maximum_burst(broker, clients)
    for i in range(5, 10):
        sub.send(ack5(PUBACK, window.pop(0).packet_id))
        nxt = sub.get()
        assert nxt.payload == f"m{i}".encode(), nxt
        window.append(nxt)
        assert sub.publishes_before_pong() == [], "more than 5 in flight"
    for msg in window:
        sub.send(ack5(PUBACK, msg.packet_id))
    flush5(sub, pub, "v5/burst")


@pytest.mark.mqtt5("maximum-packet-size")
def test_packet_over_clients_maximum_packet_size_not_sent(
    broker: BrokerProcess, clients: Clients
) -> None:
    sub = raw5(clients, broker)
    assert sub.connect5("small-packets", props={"maximum_packet_size": 256}).reason == 0
    assert sub.subscribe5([("v5/size", sub_options(1))]) == [1]
    pub = paho5(clients, broker, "pub")
    pub.publish("v5/size", b"small", qos=1)
    pub.publish("v5/size", b"x" * 1000, qos=1)  # over 256 bytes: dropped for this client
    pub.publish("v5/size", b"y" * 200, qos=0)  # still fits
    first = sub.get()
    assert first.payload == b"small"
    sub.send(ack5(PUBACK, first.packet_id))
    assert sub.get().payload == b"y" * 200
    # the dropped QoS 1 message does not hold a Receive Maximum slot or come back later
    flush5(sub, pub, "v5/size")
