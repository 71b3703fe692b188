"""Retained messages, and last wills (sent by a raw client so the close can be unclean)."""

from __future__ import annotations

import pytest

from .brokers import BrokerProcess, skip_on_mosquitto
from .clients import Clients, PahoClient, flush
from .rawmqtt import RawClient, Will, connect, disconnect, publish, subscribe

TOPIC = "retained/t"
WILL_TOPIC = "will/t"
WILL = Will(WILL_TOPIC, b"gone", qos=1)


def subscriber(clients: Clients, broker: BrokerProcess, topic: str) -> PahoClient:
    client = clients.paho(broker)
    assert client.subscribe((topic, 1)) == [1]
    return client


def test_retained_set_replace_and_clear(broker: BrokerProcess, clients: Clients) -> None:
    pub = clients.paho(broker, "pub")
    pub.publish(TOPIC, b"v1", qos=1, retain=True)
    early = subscriber(clients, broker, TOPIC)
    msg = early.get()
    assert (msg.payload, msg.retain) == (b"v1", True)

    pub.publish(TOPIC, b"v2", qos=1, retain=True)
    live = early.get()
    assert (live.payload, live.retain) == (b"v2", False), "live delivery must clear RETAIN"
    late = subscriber(clients, broker, TOPIC)
    msg = late.get()
    assert (msg.payload, msg.retain) == (b"v2", True)
    flush(late, pub, TOPIC)

    pub.publish(TOPIC, b"", qos=1, retain=True)
    after_clear = subscriber(clients, broker, TOPIC)
    flush(after_clear, pub, TOPIC)


def will_client(clients: Clients, broker: BrokerProcess, keepalive: int = 60) -> RawClient:
    raw = clients.raw(broker)
    assert raw.connect("with-will", will=WILL, keepalive=keepalive) == (False, 0)
    return raw


def assert_will_arrives(sub: PahoClient) -> None:
    msg = sub.get(timeout=10)
    assert (msg.topic, msg.payload, msg.qos) == (WILL_TOPIC, b"gone", 1)


def test_will_on_abrupt_close(broker: BrokerProcess, clients: Clients) -> None:
    sub = subscriber(clients, broker, WILL_TOPIC)
    will_client(clients, broker).close()
    assert_will_arrives(sub)


def test_will_on_keepalive_expiry(broker: BrokerProcess, clients: Clients) -> None:
    sub = subscriber(clients, broker, WILL_TOPIC)
    raw = will_client(clients, broker, keepalive=1)  # then silence: expires after 1.5 s
    assert_will_arrives(sub)
    raw.wait_closed()


@pytest.mark.parametrize(
    "violation",
    [
        pytest.param(publish("a/+", b"x"), id="wildcard-publish"),
        pytest.param(subscribe(1, [("a", 1)], flags=0), id="reserved-flags"),
        pytest.param(
            connect("with-will"),
            id="second-connect",
            marks=skip_on_mosquitto("discards the will on a second CONNECT"),
        ),
    ],
)
def test_will_on_protocol_error(broker: BrokerProcess, clients: Clients, violation: bytes) -> None:
    sub = subscriber(clients, broker, WILL_TOPIC)
    raw = will_client(clients, broker)
    raw.send(violation)
    raw.wait_closed()
    assert_will_arrives(sub)


def test_no_will_after_clean_disconnect(broker: BrokerProcess, clients: Clients) -> None:
    sub = subscriber(clients, broker, WILL_TOPIC)
    raw = will_client(clients, broker)
    raw.send(disconnect())
    raw.wait_closed()
    flush(sub, clients.paho(broker, "pub"), WILL_TOPIC)


def test_retained_will_is_kept(broker: BrokerProcess, clients: Clients) -> None:
    raw = clients.raw(broker)
    will = Will(WILL_TOPIC, b"last words", qos=1, retain=True)
    assert raw.connect("retained-will", will=will) == (False, 0)
    sub = subscriber(clients, broker, WILL_TOPIC)
    raw.close()
    assert sub.get().payload == b"last words"
    msg = subscriber(clients, broker, WILL_TOPIC).get()
    assert (msg.payload, msg.retain) == (b"last words", True)
