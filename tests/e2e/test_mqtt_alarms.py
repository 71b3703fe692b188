"""A resource alarm blocks MQTT publishers too, as RabbitMQ's MQTT plugin does: the broker
reads no publish until the alarm clears; nothing is lost."""

from __future__ import annotations

import pytest

from .brokers import BrokerProcess, skip_on_mosquitto
from .clients import Clients
from .rawmqtt import PINGREQ, PINGRESP, PUBACK, packet, publish

pytestmark = skip_on_mosquitto("no resource alarms to raise from a test")


def test_publish_waits_out_a_memory_alarm(broker: BrokerProcess, clients: Clients) -> None:
    subscriber = clients.paho(broker, "alarm-watcher")
    assert subscriber.subscribe(("alarm/t", 1)) == [1]
    publisher = clients.raw(broker)
    assert publisher.connect("alarm-publisher") == (False, 0)
    broker.set_memory_alarm(True)
    try:
        publisher.send(publish("alarm/t", b"held back", qos=1, packet_id=1))
        publisher.send(packet(PINGREQ, 0, b""))
        with pytest.raises(TimeoutError):  # neither the PUBACK nor the PINGRESP behind it
            publisher.recv(timeout=1.0)
    finally:
        broker.set_memory_alarm(False)
    assert publisher.expect(PUBACK).packet_id == 1
    publisher.expect(PINGRESP)
    message = subscriber.get()
    assert (message.topic, message.payload) == ("alarm/t", b"held back")
