"""Malformed or hostile input closes only the offending connection; others carry on."""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass

import pytest

from .brokers import BrokerFactory, BrokerProcess
from .clients import Clients, round_trip
from .rawmqtt import (
    CONNACK,
    CONNECT,
    PINGREQ,
    PINGRESP,
    PUBACK,
    Packet,
    connect,
    packet,
    publish,
    string,
    subscribe,
)


@dataclass(frozen=True)
class Offence:
    data: bytes
    after_connect: bool = True


def connect_with_reserved_flag() -> bytes:
    body = string("MQTT") + bytes([4, 0x02 | 0x01]) + b"\x00\x3c" + string("reserved")
    return packet(CONNECT, 0, body)


OFFENCES = {
    "garbage-bytes": Offence(b"\x00\xff\xfe\x13garbage\r\n" * 4, after_connect=False),
    "packet-before-connect": Offence(packet(PINGREQ, 0, b""), after_connect=False),
    "subscribe-before-connect": Offence(subscribe(1, [("a", 0)]), after_connect=False),
    "second-connect": Offence(connect("offender")),
    "remaining-length-5-bytes": Offence(b"\x30\xff\xff\xff\xff\x7f"),
    "invalid-utf8-topic": Offence(publish(b"bad/\xff\xfe", b"x")),
    "nul-in-topic": Offence(publish(b"bad/\x00", b"x")),
    "wildcard-publish-hash": Offence(publish("a/#", b"x")),
    "wildcard-publish-plus": Offence(publish("a/+/b", b"x")),
    "publish-qos-3": Offence(packet(3, 0b0110, string("a") + b"\x00\x01x")),
    "subscribe-flags-0": Offence(subscribe(1, [("a", 0)], flags=0)),
    "pubrel-flags-0": Offence(packet(6, 0, b"\x00\x01")),
    "connect-reserved-flag": Offence(connect_with_reserved_flag(), after_connect=False),
}


@pytest.mark.parametrize("offence", OFFENCES.values(), ids=OFFENCES.keys())
def test_bad_input_closes_only_that_connection(
    broker: BrokerProcess, clients: Clients, offence: Offence
) -> None:
    bystander = clients.paho(broker, "bystander")
    raw = clients.raw(broker)
    if offence.after_connect:
        assert raw.connect("offender") == (False, 0)
    raw.send_until_closed(offence.data)
    assert raw.wait_closed() == []
    round_trip(bystander)


def test_unknown_protocol_level_gets_connack_1(broker: BrokerProcess, clients: Clients) -> None:
    bystander = clients.paho(broker, "bystander")
    raw = clients.raw(broker)
    raw.send(connect("future", level=9))
    assert raw.wait_closed() == [Packet(CONNACK, 0, b"\x00\x01")]
    round_trip(bystander)


def test_packet_over_configured_maximum_closes_the_connection(
    broker_factory: BrokerFactory, clients: Clients
) -> None:
    broker = broker_factory({"mqtt": {"max_packet_size": 1024}})
    bystander = clients.paho(broker, "bystander")
    assert bystander.subscribe(("big", 1)) == [1]
    raw = clients.raw(broker)
    assert raw.connect("offender") == (False, 0)
    raw.send(publish("big", b"x" * 900, qos=1, packet_id=1))
    assert raw.expect(PUBACK).packet_id == 1
    assert bystander.get().payload == b"x" * 900
    raw.send_until_closed(publish("big", b"y" * 2000, qos=1, packet_id=2))
    assert raw.wait_closed() == []
    round_trip(bystander)


def test_subscribers_reset_mid_stream_leave_the_publisher_connected(
    broker: BrokerProcess, clients: Clients
) -> None:
    """Subscribers reset (RST) while a publisher streams to them: each reset ends only that
    subscriber's connection, however it falls between the publisher's batches."""
    publisher = clients.raw(broker)
    assert publisher.connect("streamer") == (False, 0)
    burst = publish("stream/t", bytes(256)) * 200
    streaming = threading.Event()
    streaming.set()

    def stream() -> None:
        while streaming.is_set():
            publisher.send(burst)

    flood = threading.Thread(target=stream)
    flood.start()
    try:
        for i in range(60):
            subscriber = clients.raw(broker)
            assert subscriber.connect(f"vanishing-{i}") == (False, 0)
            assert subscriber.subscribe([("stream/t", 0)]) == [0]
            subscriber.recv()
            linger = struct.pack("ii", 1, 0)  # close with RST
            subscriber.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            subscriber.close()
    finally:
        streaming.clear()
        flood.join(timeout=10)
    publisher.send(packet(PINGREQ, 0, b""))
    assert publisher.expect(PINGRESP).body == b""
    assert "connection failed" not in broker.log_text()
