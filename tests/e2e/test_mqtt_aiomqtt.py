"""aiomqtt (asyncio, MQTT 3.1.1), each test run with asyncio.run inside a plain sync test."""

from __future__ import annotations

import asyncio

import aiomqtt

from .brokers import BrokerProcess

TIMEOUT = 5


def client(broker: BrokerProcess, identifier: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        broker.host,
        broker.mqtt_port,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V311,
        timeout=TIMEOUT,
    )


async def next_message(c: aiomqtt.Client) -> aiomqtt.Message:
    async with asyncio.timeout(TIMEOUT):
        return await anext(c.messages)


def test_aiomqtt_round_trip(broker: BrokerProcess) -> None:
    async def main() -> None:
        async with client(broker, "aio-sub") as sub, client(broker, "aio-pub") as pub:
            await sub.subscribe("aio/+/t", qos=2)
            await pub.publish("aio/x/t", b"async hello", qos=1)
            msg = await next_message(sub)
            assert (msg.topic.value, msg.payload, msg.qos) == ("aio/x/t", b"async hello", 1)

    asyncio.run(main())


def test_aiomqtt_retained(broker: BrokerProcess) -> None:
    async def main() -> None:
        async with client(broker, "aio-pub") as pub:
            await pub.publish("aio/retained", b"sticky", qos=1, retain=True)
        async with client(broker, "aio-late") as late:
            await late.subscribe("aio/#", qos=1)
            msg = await next_message(late)
            assert (msg.topic.value, msg.payload, msg.retain) == ("aio/retained", b"sticky", True)

    asyncio.run(main())
