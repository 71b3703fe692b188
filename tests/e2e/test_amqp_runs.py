"""A publisher's burst reaches a no-ack consumer as one run (one write of many
basic.deliver): pika and aio-pika see every message in order, whole (bodies split into
frames of the negotiated frame_max and joined again), tags consecutive."""

from __future__ import annotations

import uuid

import aio_pika
import pytest
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from .amqp import Consumer, PikaClients, run_async, unique, url
from .brokers import BrokerProcess
from .clients import Clients
from .rawamqp import RawAmqp
from .rawmqtt import publish

#: empty, small, several 4 KiB frames, and a stream of equal 64-byte payloads
BODIES = [b"", b"a", bytes(range(256)) * 80] + [b"%063d" % i for i in range(300)]


@pytest.mark.amqp("cross-protocol")
def test_an_mqtt_burst_reaches_a_pika_no_ack_consumer_in_order(
    amqp_broker: BrokerProcess, amqp_clients: PikaClients, clients: Clients
) -> None:
    channel = amqp_clients.channel(frame_max=4096)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, "amq.topic", "burst.#")
    consumer = Consumer(channel, queue, auto_ack=True)
    mqtt = clients.raw(amqp_broker)
    assert mqtt.connect(f"burst-{uuid.uuid4().hex[:8]}") == (False, 0)
    mqtt.send(b"".join(publish("burst/1", body) for body in BODIES))  # one write: a run
    deliveries = consumer.wait(len(BODIES))
    assert [d.body for d in deliveries] == BODIES
    assert [d.method.delivery_tag for d in deliveries] == list(range(1, len(BODIES) + 1))
    assert {(d.method.exchange, d.method.routing_key) for d in deliveries} == {
        ("amq.topic", "burst.1")
    }
    assert not any(d.method.redelivered for d in deliveries)


@pytest.mark.amqp("basic")
def test_an_amqp_burst_with_properties_reaches_an_aio_pika_no_ack_consumer(
    amqp_broker: BrokerProcess,
) -> None:
    queue_name = unique("runs")
    bodies = [*BODIES, bytes(200_000)]  # and one over the default frame_max of 128 KiB
    props = commands.Basic.Properties(
        content_type="text/plain", headers={"n": 7, "s": "x"}, app_id="burst"
    )

    async def scenario() -> list[aio_pika.abc.AbstractIncomingMessage]:
        connection = await aio_pika.connect(url(amqp_broker))
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(queue_name, exclusive=True)
            received = []
            async with queue.iterator(no_ack=True) as messages:
                publisher = RawAmqp(amqp_broker.host, amqp_broker.amqp_port)
                try:
                    room = publisher.handshake().frame_max - 8
                    publisher.open_channel(1)
                    frames = []
                    for body in bodies:
                        method = commands.Basic.Publish(routing_key=queue_name)
                        frames += [method, ContentHeader(0, len(body), props)]
                        frames += [
                            ContentBody(body[i : i + room]) for i in range(0, len(body), room)
                        ]
                    publisher.send(b"".join(pamqp_frame.marshal(f, 1) for f in frames))
                    async for message in messages:
                        received.append(message)
                        if len(received) == len(bodies):
                            break
                finally:
                    publisher.close()
            return received

    received = run_async(scenario(), timeout=30)
    assert [m.body for m in received] == bodies
    assert [m.delivery_tag for m in received] == list(range(1, len(bodies) + 1))
    assert {(m.content_type, m.app_id, tuple(sorted(m.headers.items()))) for m in received} == {
        ("text/plain", "burst", (("n", 7), ("s", "x")))
    }
