"""MQTT and AMQP meet on amq.topic (SPEC, where protocols meet): topics and routing keys,
QoS and delivery mode, MQTT 5 properties and AMQP properties map both ways. Ours only."""

from __future__ import annotations

import uuid

import pika
import pytest

from .amqp import Consumer, PikaClients
from .brokers import BrokerProcess
from .clients import Clients
from .mqtt5 import paho5

pytestmark = pytest.mark.amqp("cross-protocol")


def topic_consumer(amqp_clients: PikaClients, pattern: str) -> Consumer:
    channel = amqp_clients.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, "amq.topic", pattern)
    return Consumer(channel, queue, auto_ack=True)


def test_mqtt_publish_reaches_a_queue_bound_to_amq_topic(
    amqp_broker: BrokerProcess, amqp_clients: PikaClients, clients: Clients
) -> None:
    consumer = topic_consumer(amqp_clients, "sensors.#")
    mqtt = clients.paho(amqp_broker)
    mqtt.publish("sensors/room1/temp", b"21.5", qos=1)
    mqtt.publish("sensors/room.2/temp", b"19.0", qos=0)  # "." inside a level becomes "/"
    first, second = consumer.wait(2)
    assert (first.method.exchange, first.method.routing_key, first.body) == (
        "amq.topic",
        "sensors.room1.temp",
        b"21.5",
    )
    assert first.properties.delivery_mode == 2  # QoS 1 is persistent
    assert (second.method.routing_key, second.body) == ("sensors.room/2.temp", b"19.0")
    assert second.properties.delivery_mode != 2


def test_amqp_publish_reaches_an_mqtt_subscriber(
    amqp_broker: BrokerProcess, amqp_clients: PikaClients, clients: Clients
) -> None:
    mqtt = clients.paho(amqp_broker)
    assert mqtt.subscribe(("cmd/light/+", 1)) == [1]
    channel = amqp_clients.channel()
    channel.basic_publish("amq.topic", "cmd.light.1", b"on", pika.BasicProperties(delivery_mode=2))
    channel.basic_publish("amq.topic", "cmd.light.2", b"off")
    channel.basic_publish("amq.topic", "cmd.fan.1", b"not for the lights")
    first, second = mqtt.get(), mqtt.get()
    assert (first.topic, first.payload, first.qos) == ("cmd/light/1", b"on", 1)
    assert (second.topic, second.payload, second.qos) == ("cmd/light/2", b"off", 0)


def test_mqtt5_properties_become_amqp_properties(
    amqp_broker: BrokerProcess, amqp_clients: PikaClients, clients: Clients
) -> None:
    consumer = topic_consumer(amqp_clients, "props.#")
    publisher = paho5(clients, amqp_broker, f"props-{uuid.uuid4().hex[:8]}")
    publisher.publish(
        "props/in",
        b"{}",
        qos=1,
        UserProperty=[("unit", "celsius"), ("site", "lab")],
        ContentType="application/json",
        CorrelationData=b"corr-1",
        ResponseTopic="reply/here",
        MessageExpiryInterval=60,
    )
    props = consumer.wait(1)[0].properties
    assert {k: props.headers[k] for k in ("unit", "site")} == {"unit": "celsius", "site": "lab"}
    assert (props.content_type, props.correlation_id, props.reply_to) == (
        "application/json",
        "corr-1",
        "reply.here",
    )
    assert 0 < int(props.expiration) <= 60_000  # milliseconds, counting down


def test_amqp_properties_become_mqtt5_properties(
    amqp_broker: BrokerProcess, amqp_clients: PikaClients, clients: Clients
) -> None:
    subscriber = paho5(clients, amqp_broker, f"props-{uuid.uuid4().hex[:8]}")
    assert subscriber.subscribe("props/out", 1) == [1]
    props = pika.BasicProperties(
        headers={"unit": "celsius", "site": "lab"},
        content_type="text/plain",
        correlation_id="corr-2",
        reply_to="reply.there",
        delivery_mode=2,
    )
    amqp_clients.channel().basic_publish("amq.topic", "props.out", b"21", props)
    msg = subscriber.get()
    assert (msg.topic, msg.payload) == ("props/out", b"21")
    got = msg.properties
    assert {("unit", "celsius"), ("site", "lab")} <= set(got.UserProperty)
    assert (got.ContentType, got.CorrelationData, got.ResponseTopic) == (
        "text/plain",
        b"corr-2",
        "reply/there",
    )
