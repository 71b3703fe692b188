"""QoS 1 and 2 flows at the packet level, across reconnects (raw socket client)."""

from __future__ import annotations

from .brokers import BrokerProcess
from .clients import Clients, flush
from .rawmqtt import (
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    RawClient,
    ack,
    parse_publish,
    publish,
)

TOPIC = "qos/flow"


def reconnect(clients: Clients, broker: BrokerProcess, client_id: str) -> RawClient:
    """A new connection resuming the persistent session of `client_id`."""
    raw = clients.raw(broker)
    assert raw.connect(client_id, clean=False) == (True, 0)
    return raw


def test_qos2_inbound_exactly_once_across_reconnect(
    broker: BrokerProcess, clients: Clients
) -> None:
    sub = clients.paho(broker, "q2-sub")
    assert sub.subscribe((TOPIC, 2)) == [2]
    raw = clients.raw(broker)
    assert raw.connect("q2-pub", clean=False) == (False, 0)
    raw.send(publish(TOPIC, b"once", qos=2, packet_id=7))
    assert raw.expect(PUBREC).packet_id == 7
    raw.close()

    raw = reconnect(clients, broker, "q2-pub")
    raw.send(publish(TOPIC, b"once", qos=2, packet_id=7, dup=True))
    assert raw.expect(PUBREC).packet_id == 7
    raw.send(ack(PUBREL, 7))
    assert raw.expect(PUBCOMP).packet_id == 7

    msg = sub.get()
    assert (msg.payload, msg.qos) == (b"once", 2)
    flush(sub, clients.paho(broker, "marker"), TOPIC, qos=2)


def test_qos2_outbound_redelivered_with_dup_after_reconnect(
    broker: BrokerProcess, clients: Clients
) -> None:
    raw = clients.raw(broker)
    assert raw.connect("q2-out", clean=False) == (False, 0)
    assert raw.subscribe([(TOPIC, 2)]) == [2]
    pub = clients.paho(broker, "pub")
    pub.publish(TOPIC, b"exactly", qos=2)
    first = parse_publish(raw.expect(PUBLISH))
    assert (first.payload, first.qos, first.dup) == (b"exactly", 2, False)
    raw.close()  # no PUBREC

    raw = reconnect(clients, broker, "q2-out")
    again = parse_publish(raw.expect(PUBLISH))
    assert (again.payload, again.qos, again.dup) == (b"exactly", 2, True)
    assert again.packet_id == first.packet_id
    raw.send(ack(PUBREC, again.packet_id))
    assert raw.expect(PUBREL).packet_id == again.packet_id
    raw.send(ack(PUBCOMP, again.packet_id))

    pub.publish(TOPIC, b"next", qos=2)
    nxt = parse_publish(raw.expect(PUBLISH))
    assert (nxt.payload, nxt.dup) == (b"next", False), "the completed message came back"


def test_qos2_outbound_pubrel_resent_after_reconnect(
    broker: BrokerProcess, clients: Clients
) -> None:
    raw = clients.raw(broker)
    assert raw.connect("q2-rel", clean=False) == (False, 0)
    assert raw.subscribe([(TOPIC, 2)]) == [2]
    pub = clients.paho(broker, "pub")
    pub.publish(TOPIC, b"half-done", qos=2)
    first = parse_publish(raw.expect(PUBLISH))
    raw.send(ack(PUBREC, first.packet_id))
    assert raw.expect(PUBREL).packet_id == first.packet_id
    raw.close()  # no PUBCOMP

    raw = reconnect(clients, broker, "q2-rel")
    assert raw.expect(PUBREL).packet_id == first.packet_id
    raw.send(ack(PUBCOMP, first.packet_id))

    pub.publish(TOPIC, b"next", qos=2)
    assert parse_publish(raw.expect(PUBLISH)).payload == b"next"


def test_qos1_outbound_redelivered_with_dup_after_reconnect(
    broker: BrokerProcess, clients: Clients
) -> None:
    raw = clients.raw(broker)
    assert raw.connect("q1-out", clean=False) == (False, 0)
    assert raw.subscribe([(TOPIC, 1)]) == [1]
    pub = clients.paho(broker, "pub")
    pub.publish(TOPIC, b"at-least-once", qos=1)
    first = parse_publish(raw.expect(PUBLISH))
    assert (first.qos, first.dup) == (1, False)
    raw.close()  # no PUBACK

    raw = reconnect(clients, broker, "q1-out")
    again = parse_publish(raw.expect(PUBLISH))
    assert (again.payload, again.dup, again.packet_id) == (b"at-least-once", True, first.packet_id)
    raw.send(ack(PUBACK, again.packet_id))

    pub.publish(TOPIC, b"next", qos=1)
    assert parse_publish(raw.expect(PUBLISH)).payload == b"next"


def test_overlapping_subscriptions_deliver_one_copy_at_highest_qos(
    broker: BrokerProcess, clients: Clients
) -> None:
    sub, pub = clients.paho(broker, "overlap"), clients.paho(broker, "pub")
    assert sub.subscribe(("a/#", 1), ("a/b", 2)) == [1, 2]
    pub.publish("a/b", b"one copy", qos=2)
    msg = sub.get()
    assert (msg.topic, msg.payload, msg.qos) == ("a/b", b"one copy", 2)
    flush(sub, pub, "a/b", qos=2)
