"""MQTT 5 message properties passed through unchanged, and request/response, with paho,
aiomqtt and gmqtt."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .brokers import BrokerProcess
from .clients import Clients
from .mqtt5 import TIMEOUT, aio5, paho5, raw5, sub_options

USER_PROPERTIES = [("region", "eu"), ("trace", "1"), ("region", "us"), ("ünï", "cödé")]


@pytest.mark.mqtt5("properties")
def test_publisher_properties_arrive_intact(broker: BrokerProcess, clients: Clients) -> None:
    sub = paho5(clients, broker, "sub")
    assert sub.subscribe("v5/props", 2) == [2]
    pub = paho5(clients, broker, "pub")
    pub.publish(
        "v5/props",
        "héllo".encode(),
        qos=2,
        PayloadFormatIndicator=1,
        ContentType="text/plain; charset=utf-8",
        ResponseTopic="v5/reply/here",
        CorrelationData=b"\x00\x01\xffcorr",
        UserProperty=USER_PROPERTIES,
        MessageExpiryInterval=300,
    )
    msg = sub.get()
    props = msg.properties
    assert (msg.topic, msg.payload, msg.qos) == ("v5/props", "héllo".encode(), 2)
    assert props.PayloadFormatIndicator == 1
    assert props.ContentType == "text/plain; charset=utf-8"
    assert props.ResponseTopic == "v5/reply/here"
    assert props.CorrelationData == b"\x00\x01\xffcorr"
    assert props.UserProperty == USER_PROPERTIES  # order and repeats kept
    assert 0 < props.MessageExpiryInterval <= 300


@pytest.mark.mqtt5("properties")
def test_properties_on_retained_and_queued_messages(
    broker: BrokerProcess, clients: Clients
) -> None:
    pub = paho5(clients, broker, "pub")
    props = {"ContentType": "a/b", "UserProperty": [("k", "v")]}
    pub.publish("v5/props/r", b"r", qos=1, retain=True, **props)
    sub = raw5(clients, broker)
    assert sub.connect5("late").reason == 0
    assert sub.subscribe5([("v5/props/r", sub_options(0))]) == [0]
    msg = sub.get()
    assert msg.retain and msg.props["content_type"] == "a/b"
    assert msg.props["user_property"] == [("k", "v")]


@pytest.mark.mqtt5("properties")
def test_no_properties_for_mqtt_311_subscribers(broker: BrokerProcess, clients: Clients) -> None:
    old = clients.paho(broker, "old-sub")
    assert old.subscribe(("v5/props/old", 1)) == [1]
    paho5(clients, broker, "pub").publish(
        "v5/props/old", b"payload only", qos=1, UserProperty=[("k", "v")], ContentType="x/y"
    )
    msg = old.get()
    assert (msg.payload, msg.properties) == (b"payload only", None)


@pytest.mark.mqtt5("request-response")
def test_request_response_with_paho(broker: BrokerProcess, clients: Clients) -> None:
    responder = paho5(clients, broker, "responder")
    assert responder.subscribe("v5/service/echo", 1) == [1]
    requester = paho5(clients, broker, "requester")
    assert requester.subscribe("v5/replies/requester", 1) == [1]
    for n in range(3):
        requester.publish(
            "v5/service/echo",
            f"req{n}".encode(),
            qos=1,
            ResponseTopic="v5/replies/requester",
            CorrelationData=f"id-{n}".encode(),
        )
        request = responder.get()
        reply_to = request.properties.ResponseTopic
        responder.publish(
            reply_to,
            request.payload.upper(),
            qos=1,
            CorrelationData=request.properties.CorrelationData,
        )
        reply = requester.get()
        assert reply.payload == f"REQ{n}".encode()
        assert reply.properties.CorrelationData == f"id-{n}".encode()


@pytest.mark.mqtt5("request-response")
def test_request_response_with_aiomqtt(broker: BrokerProcess) -> None:
    async def serve(server: aiomqtt.Client) -> None:
        async for msg in server.messages:
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = msg.properties.CorrelationData
            await server.publish(
                msg.properties.ResponseTopic, b"pong:" + msg.payload, qos=1, properties=props
            )
            return

    async def main() -> None:
        async with aio5(broker, "aio-server") as server, aio5(broker, "aio-client") as client:
            await server.subscribe("v5/aio/rpc", qos=1)
            await client.subscribe("v5/aio/answers", qos=1)
            task = asyncio.create_task(serve(server))
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = "v5/aio/answers"
            props.CorrelationData = b"\x07corr"
            await client.publish("v5/aio/rpc", b"ping", qos=1, properties=props)
            async with asyncio.timeout(TIMEOUT):
                reply = await anext(client.messages)
                await task
            assert reply.payload == b"pong:ping"
            assert reply.properties.CorrelationData == b"\x07corr"

    asyncio.run(main())


@pytest.mark.mqtt5("properties")
def test_properties_with_gmqtt(broker: BrokerProcess) -> None:
    gmqtt = pytest.importorskip("gmqtt")

    async def main() -> None:
        received: asyncio.Queue = asyncio.Queue()
        connected, subscribed = asyncio.Event(), asyncio.Event()

        def on_message(_client, topic, payload, qos, properties):  # noqa: ANN001, ANN202
            received.put_nowait((topic, payload, properties))
            return 0

        sub = gmqtt.Client("gmqtt-sub")
        sub.on_message = on_message
        sub.on_connect = lambda *_args: connected.set()
        sub.on_subscribe = lambda *_args: subscribed.set()
        pub = gmqtt.Client("gmqtt-pub")
        await sub.connect(broker.host, broker.mqtt_port, version=gmqtt.constants.MQTTv50)
        await pub.connect(broker.host, broker.mqtt_port, version=gmqtt.constants.MQTTv50)
        try:
            async with asyncio.timeout(TIMEOUT):
                await connected.wait()
            sub.subscribe("v5/gmqtt/#", qos=1, subscription_identifier=42)
            async with asyncio.timeout(TIMEOUT):
                await subscribed.wait()
            pub.publish(
                "v5/gmqtt/t",
                b"from gmqtt",
                qos=1,
                content_type="text/plain",
                response_topic="v5/gmqtt/reply",
                correlation_data=b"c1",
                user_property=[("a", "1")],
            )
            async with asyncio.timeout(TIMEOUT):
                topic, payload, props = await received.get()
            assert (topic, payload) == ("v5/gmqtt/t", b"from gmqtt")
            assert props["content_type"] == ["text/plain"]
            assert props["response_topic"] == ["v5/gmqtt/reply"]
            assert props["correlation_data"] == [b"c1"]
            assert props["user_property"] == [("a", "1")]
            assert props["subscription_identifier"] == [42]
        finally:
            await pub.disconnect()
            await sub.disconnect()

    asyncio.run(main())
