"""The native WebSocket protocol meets the others on amq.topic (SPEC "Where protocols
meet"): a /ws publish reaches MQTT and AMQP subscribers, an MQTT 5 publish reaches a /ws
subscriber with its payload and properties."""

from __future__ import annotations

import json

from . import amqp
from .brokers import ALICE, BrokerProcess
from .clients import Clients
from .mqtt5 import Paho5
from .wsnative import MSGPACK, NativeClients


def test_ws_publish_reaches_mqtt_and_amqp_subscribers(
    broker: BrokerProcess, clients: Clients, native: NativeClients
) -> None:
    mqtt = clients.paho(broker)
    assert mqtt.subscribe(("browser/+/events", 1)) == [1]
    pika = amqp.PikaClients(broker)
    try:
        channel = pika.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, "amq.topic", routing_key="browser.#")
        consumer = amqp.Consumer(channel, queue, auto_ack=True)
        browser = native(broker, basic_auth=ALICE)
        browser.ok(
            "publish",
            topic="browser/tab1/events",
            payload='{"click": 1}',
            qos=1,
            properties={"content_type": "application/json", "headers": {"tab": "1"}},
        )
        message = mqtt.get()
        assert (message.topic, message.payload, message.qos) == (
            "browser/tab1/events",
            b'{"click": 1}',
            1,
        )
        delivery = consumer.wait(1)[0]
        assert delivery.body == b'{"click": 1}'
        assert delivery.method.routing_key == "browser.tab1.events"
        assert delivery.properties.content_type == "application/json"
        assert delivery.properties.headers == {"tab": "1"}
        assert delivery.properties.delivery_mode == 2
    finally:
        pika.close_all()


def test_amqp_consumer_queue_is_consumed_over_ws(
    broker: BrokerProcess, native: NativeClients
) -> None:
    pika = amqp.PikaClients(broker)
    try:
        channel = pika.channel()
        channel.queue_declare("ws-work")
        channel.basic_publish("", "ws-work", b"\xff\x00 binary")
        browser = native(broker, basic_auth=ALICE)
        browser.ok("consume", queue="ws-work", prefetch=10)
        message = browser.message()
        assert (message["encoding"], message["exchange"], message["routing_key"]) == (
            "base64",
            "",
            "ws-work",
        )
        assert "topic" not in message
        browser.ok("ack", delivery_tag=message["delivery_tag"])
        assert browser.error("ack", delivery_tag=message["delivery_tag"]) == "precondition_failed"
    finally:
        pika.close_all()


def test_mqtt5_publish_reaches_ws_subscriber_with_properties(
    broker: BrokerProcess, native: NativeClients
) -> None:
    for subprotocol in ("broker.v1.json", MSGPACK):
        browser = native(broker, subprotocol)
        browser.ok("subscribe", topic="devices/#")
        device = Paho5(broker.host, broker.mqtt_port)
        try:
            assert device.connect().reason == 0
            device.publish(
                "devices/7/state",
                json.dumps({"on": True}),
                qos=1,
                ContentType="application/json",
                UserProperty=[("fw", "1.2"), ("site", "lab")],
                CorrelationData=b"req-1",
                ResponseTopic="devices/7/reply",
            )
        finally:
            device.disconnect()
        message = browser.message()
        body = message["payload"]
        assert message["topic"] == "devices/7/state"
        assert (body if isinstance(body, bytes) else body.encode()) == b'{"on": true}'
        properties = message["properties"]
        assert properties["content_type"] == "application/json"
        assert properties["headers"] == {"fw": "1.2", "site": "lab"}
        assert properties["correlation_id"] == "req-1"
        assert properties["reply_to"] == "devices.7.reply"
        assert properties["delivery_mode"] == 2
