"""Persistent and clean sessions, offline queueing and session takeover."""

from __future__ import annotations

import pytest

from .brokers import BrokerProcess
from .clients import Clients, flush, round_trip

TOPIC = "session/t"


@pytest.mark.parametrize("qos", [1, 2])
def test_persistent_session_queues_messages_while_offline(
    broker: BrokerProcess, clients: Clients, qos: int
) -> None:
    sub = clients.paho(broker, "persistent", clean_session=False)
    assert sub.subscribe((TOPIC, qos)) == [qos]
    sub.disconnect()
    pub = clients.paho(broker, "pub")
    for i in range(3):
        pub.publish(TOPIC, f"offline-{i}".encode(), qos)

    sub = clients.paho_unconnected(broker, "persistent", clean_session=False)
    connack = sub.connect()
    assert (connack.reason, connack.session_present) == (0, True)
    assert [sub.get().payload for _ in range(3)] == [b"offline-0", b"offline-1", b"offline-2"]
    flush(sub, pub, TOPIC)


def test_clean_session_discards_the_stored_session(broker: BrokerProcess, clients: Clients) -> None:
    sub = clients.paho(broker, "forgetful", clean_session=False)
    assert sub.subscribe((TOPIC, 1)) == [1]
    sub.disconnect()
    pub = clients.paho(broker, "pub")
    pub.publish(TOPIC, b"lost", qos=1)

    sub = clients.paho_unconnected(broker, "forgetful", clean_session=True)
    assert sub.connect().session_present is False
    assert sub.subscribe((TOPIC, 1)) == [1]
    flush(sub, pub, TOPIC)  # "lost" would arrive before the marker
    sub.disconnect()

    sub = clients.paho_unconnected(broker, "forgetful", clean_session=False)
    assert sub.connect().session_present is False


def test_first_persistent_connect_has_no_session(broker: BrokerProcess, clients: Clients) -> None:
    client = clients.paho_unconnected(broker, "brand-new", clean_session=False)
    assert client.connect().session_present is False


def test_second_connect_with_same_client_id_takes_over(
    broker: BrokerProcess, clients: Clients
) -> None:
    first = clients.raw(broker)
    assert first.connect("same-id") == (False, 0)
    second = clients.paho(broker, "same-id")
    first.wait_closed()
    round_trip(second)


def test_takeover_keeps_a_persistent_session(broker: BrokerProcess, clients: Clients) -> None:
    first = clients.paho(broker, "same-id", clean_session=False)
    assert first.subscribe((TOPIC, 1)) == [1]
    second = clients.paho_unconnected(broker, "same-id", clean_session=False)
    assert second.connect().session_present is True
    assert first.disconnected.wait(5), "the first connection was not closed"
    clients.paho(broker, "pub").publish(TOPIC, b"to the new one", qos=1)
    assert second.get().payload == b"to the new one"
