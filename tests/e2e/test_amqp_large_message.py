"""An 8 MiB message round trip, split into body frames of the negotiated frame_max."""

from __future__ import annotations

import hashlib

import aio_pika
import pytest

from .amqp import Consumer, PikaClients, run_async, unique, url
from .brokers import BrokerProcess

pytestmark = pytest.mark.amqp("large-message")

BODY = hashlib.sha256(b"seed").digest() * (8 * 1024 * 1024 // 32)  # 8 MiB, not compressible


def test_eight_mib_with_pika_at_the_smallest_frame_max(amqp_clients: PikaClients) -> None:
    """frame_max 4096: over 2000 body frames each way."""
    channel = amqp_clients.channel(frame_max=4096)
    queue = channel.queue_declare("", exclusive=True).method.queue
    consumer = Consumer(channel, queue, auto_ack=True)
    channel.basic_publish("", queue, BODY)
    assert consumer.wait(1, timeout=30)[0].body == BODY


def test_eight_mib_with_aio_pika(amqp_broker: BrokerProcess) -> None:
    queue_name = unique("large")

    async def scenario() -> bytes:
        connection = await aio_pika.connect(url(amqp_broker))
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(queue_name, exclusive=True)
            await channel.default_exchange.publish(aio_pika.Message(BODY), routing_key=queue_name)
            message = await queue.get(no_ack=True, timeout=30)
            return message.body

    assert run_async(scenario(), timeout=60) == BODY
