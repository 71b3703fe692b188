"""CONNECT handling and plain publish/subscribe with paho-mqtt (MQTT 3.1.1)."""

from __future__ import annotations

import pytest

from . import rawmqtt
from .brokers import BrokerFactory, BrokerProcess, skip_on_mosquitto
from .clients import Clients, round_trip


def test_paho_connects_and_round_trips(broker: BrokerProcess, clients: Clients) -> None:
    round_trip(clients.paho(broker, "plain-client"))


@pytest.mark.parametrize("pub_qos", [0, 1, 2])
def test_delivery_qos_is_min_of_publish_and_subscription(
    broker: BrokerProcess, clients: Clients, pub_qos: int
) -> None:
    sub, pub = clients.paho(broker, "sub"), clients.paho(broker, "pub")
    assert sub.subscribe(("qos/0", 0), ("qos/1", 1), ("qos/2", 2)) == [0, 1, 2]
    for sub_qos in range(3):
        pub.publish(f"qos/{sub_qos}", f"pub{pub_qos}".encode(), pub_qos)
    received = {}
    for _ in range(3):
        msg = sub.get()
        received[msg.topic] = (msg.payload, msg.qos)
    assert received == {
        f"qos/{sub_qos}": (f"pub{pub_qos}".encode(), min(pub_qos, sub_qos)) for sub_qos in range(3)
    }


def test_empty_client_id_is_accepted_with_clean_session(
    broker: BrokerProcess, clients: Clients
) -> None:
    raw = clients.raw(broker)
    assert raw.connect("", clean=True) == (False, 0)


def test_empty_client_id_without_clean_session_is_rejected(
    broker: BrokerProcess, clients: Clients
) -> None:
    raw = clients.raw(broker)
    assert raw.connect("", clean=False) == (False, 2)  # identifier rejected
    assert raw.wait_closed() == []


def test_a_silent_client_is_dropped_after_its_keepalive(
    broker: BrokerProcess, clients: Clients
) -> None:
    """Keepalive 1 s: a client silent after its CONNACK is closed once 1.5 s have passed
    (the wait is the behaviour under test; Mosquitto checks lazily, hence its length); the
    broker serves everyone else meanwhile."""
    silent = clients.raw(broker)
    assert silent.connect("silent", keepalive=1) == (False, 0)
    round_trip(clients.paho(broker, "bystander"))
    assert silent.wait_closed(timeout=10) == []


@skip_on_mosquitto("the connect timeout is this broker's setting")
def test_a_connection_without_connect_is_dropped_after_the_connect_timeout(
    broker_factory: BrokerFactory, clients: Clients
) -> None:
    """A client that opens a connection and sends nothing is closed after
    ``mqtt.connect_timeout``; one that connected is not."""
    broker = broker_factory({"mqtt": {"connect_timeout": 1}})
    mute, connected = clients.raw(broker), clients.raw(broker)
    assert connected.connect("keeps", keepalive=0) == (False, 0)
    assert mute.wait_closed(timeout=10) == []
    connected.send(rawmqtt.packet(rawmqtt.PINGREQ, 0, b""))
    assert connected.expect(rawmqtt.PINGRESP).body == b""
