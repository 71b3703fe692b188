"""The MQTT connection state machine without sockets: bytes in, bytes out, core behind."""

from __future__ import annotations

from broker.message import Message
from protocols.mqtt import codec
from protocols.mqtt.frontend import MQTTFrontEnd
from tests.protocols.mqtt.sansio import Client


def test_packet_before_connect_closes(front: MQTTFrontEnd) -> None:
    client = Client(front)
    assert client.send(codec.Pingreq()) == []
    assert client.conn.closing


def test_second_connect_closes(front: MQTTFrontEnd) -> None:
    client = Client(front)
    client.connect("a")
    client.send(codec.Connect("MQTT", 4, True, 60, "a"))
    assert client.conn.closing


def test_qos0_publish_is_forwarded_as_received(front: MQTTFrontEnd) -> None:
    sub, pub = Client(front), Client(front)
    sub.connect("sub")
    assert sub.subscribe(("t/#", 0)) == [0]
    pub.connect("pub")
    packet = codec.encode_publish("t/x", b"hello", 0, False, False, None, None, 4)
    pub.conn.receive(packet)
    assert bytes(sub.conn.take_output()) == packet


def test_overlapping_subscriptions_deliver_once_at_highest_qos(front: MQTTFrontEnd) -> None:
    sub, pub = Client(front), Client(front)
    sub.connect("sub")
    assert sub.subscribe(("a/#", 1), ("a/b", 2)) == [1, 2]
    pub.connect("pub")
    pub.send(codec.Publish("a/b", b"m", 2, False, False, 7))
    [delivery] = sub.received()
    assert (delivery.topic, delivery.qos) == ("a/b", 2)


def test_qos2_duplicate_is_routed_once(front: MQTTFrontEnd) -> None:
    sub, pub = Client(front), Client(front)
    sub.connect("sub")
    sub.subscribe(("q", 0))
    pub.connect("pub")
    [pubrec] = pub.send(codec.Publish("q", b"once", 2, False, False, 9))
    assert isinstance(pubrec, codec.Pubrec)
    [pubrec] = pub.send(codec.Publish("q", b"once", 2, False, True, 9))
    assert isinstance(pubrec, codec.Pubrec)
    [pubcomp] = pub.send(codec.Pubrel(9))
    assert isinstance(pubcomp, codec.Pubcomp)
    assert [p.payload for p in sub.received()] == [b"once"]


def test_vhost_permissions_gate_publish_and_subscribe(front: MQTTFrontEnd) -> None:
    reader, writer, watcher = Client(front), Client(front), Client(front)
    assert reader.connect("r", "reader").reason_code == 0
    assert writer.connect("w", "writer").reason_code == 0
    watcher.connect("watch")
    assert watcher.subscribe(("#", 0)) == [0]
    assert writer.subscribe(("x", 0)) == [codec_failure()]
    assert reader.subscribe(("x", 0)) == [0]
    reader.send(codec.Publish("x", b"from reader", 0, False, False, None))
    writer.send(codec.Publish("x", b"from writer", 0, False, False, None))
    assert [p.payload for p in watcher.received()] == [b"from writer"]


def test_acl_refuses_subscription_and_drops_publish(front: MQTTFrontEnd) -> None:
    client, watcher = Client(front), Client(front)
    client.connect("c")
    watcher.connect("w")
    watcher.subscribe(("open/#", 0))
    assert client.subscribe(("secret/#", 0), ("open/#", 0)) == [codec_failure(), 0]
    client.send(codec.Publish("secret/x", b"no", 0, False, False, None))
    client.send(codec.Publish("open/x", b"yes", 0, False, False, None))
    assert [p.payload for p in watcher.received()] == [b"yes"]


def test_wildcard_overlapping_a_denied_branch_is_granted_and_filtered(
    front: MQTTFrontEnd,
) -> None:
    watcher, publisher = Client(front), Client(front)
    for topic in ("secret/r", "open/r"):
        front.broker.retained.set(topic, Message("amq.topic", topic, b"kept", topic=topic))
    watcher.connect("w")
    publisher.connect("p")
    assert watcher.subscribe(("#", 0)) == [0]
    assert [p.topic for p in watcher.retained] == ["open/r"]
    publisher.send(codec.Publish("secret/x", b"hidden", 0, False, False, None))
    publisher.send(codec.Publish("open/x", b"shown", 0, False, False, None))
    assert [p.payload for p in watcher.received()] == [b"shown"]


def test_wrong_password_gets_connack_4(front: MQTTFrontEnd) -> None:
    client = Client(front)
    [connack] = client.send(codec.Connect("MQTT", 4, True, 60, "x", "reader", b"wrong"))
    assert connack.reason_code == 4 and client.conn.closing


def codec_failure() -> int:
    return 0x80


def test_a_qos1_backlog_drains_a_window_at_a_time(front: MQTTFrontEnd) -> None:
    """QoS 1 deliveries beyond the inflight window wait in the session's queue and go out
    a window's room at a time as PUBACKs come back: whole, in order, distinct ids."""
    sub, pub = Client(front), Client(front)
    sub.connect("s")
    sub.subscribe(("q1/#", 1))
    pub.connect("p")
    bodies = [bytes([i]) * (i % 3 * 20) for i in range(50)]
    acks = pub.send(
        *[codec.Publish("q1/a", b, 1, False, False, i + 1) for i, b in enumerate(bodies)]
    )
    assert [a.packet_id for a in acks] == list(range(1, 51))
    got: list[codec.Publish] = []
    while window := sub.received():
        assert len(window) <= front.settings.max_inflight
        assert len({p.packet_id for p in window}) == len(window)
        got += window
        sub.conn.receive(b"".join(codec.encode(codec.Puback(p.packet_id)) for p in window))
    assert [(p.topic, p.payload, p.qos) for p in got] == [("q1/a", b, 1) for b in bodies]
    assert not front.sessions["s"].inflight


def test_a_run_fans_out_whole_and_in_order_to_every_subscriber(front: MQTTFrontEnd) -> None:
    """3.x subscribers of a run share one joined copy of its packets: each still gets all
    of them, in order, and a later run of the same length is its own."""
    subs = [Client(front) for _ in range(3)]
    for index, sub in enumerate(subs):
        sub.connect(f"s{index}")
        sub.subscribe(("fan/#", 0))
    pub = Client(front)
    pub.connect("p")
    for round_ in range(2):
        bodies = [f"{round_}.{i}".encode() * (i + 1) for i in range(5)]
        pub.send(*[codec.Publish("fan/a", body, 0, False, False, None) for body in bodies])
        for sub in subs:
            assert [(p.topic, p.payload) for p in sub.received()] == [
                ("fan/a", body) for body in bodies
            ]
