"""CONNECT handling and plain publish/subscribe with paho-mqtt (MQTT 3.1.1)."""

from __future__ import annotations

import pytest

from .brokers import BrokerProcess
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
