"""RPC over direct reply-to (`amq.rabbitmq.reply-to`): no reply queue is declared; the
broker routes the reply straight to the requesting channel's pseudo-consumer."""

from __future__ import annotations

import asyncio

import aio_pika
import pika
import pytest

from .amqp import (
    PRECONDITION_FAILED,
    Consumer,
    PikaClients,
    channel_closed,
    run_async,
    unique,
    url,
)
from .brokers import BrokerProcess

pytestmark = pytest.mark.amqp("reply-to")

REPLY_TO = "amq.rabbitmq.reply-to"


def test_rpc_over_direct_reply_to(amqp_clients: PikaClients) -> None:
    server = amqp_clients.channel()
    requests = server.queue_declare(unique("rpc"), exclusive=True).method.queue
    served = Consumer(server, requests, auto_ack=True)

    client = amqp_clients.channel()
    replies = Consumer(client, REPLY_TO, auto_ack=True)
    for n in (1, 2):
        props = pika.BasicProperties(reply_to=REPLY_TO, correlation_id=f"call-{n}")
        client.basic_publish("", requests, f"{n}".encode(), props)

    for request in served.wait(2):
        reply_to = request.properties.reply_to
        assert reply_to.startswith(REPLY_TO + "."), reply_to  # the broker's routable name
        answer = str(int(request.body) * 10).encode()
        props = pika.BasicProperties(correlation_id=request.properties.correlation_id)
        server.basic_publish("", reply_to, answer, props)

    got = {d.properties.correlation_id: d.body for d in replies.wait(2)}
    assert got == {"call-1": b"10", "call-2": b"20"}


def test_publishing_with_direct_reply_to_needs_the_consumer_first(
    amqp_clients: PikaClients,
) -> None:
    channel = amqp_clients.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    with channel_closed(PRECONDITION_FAILED):
        channel.basic_publish("", queue, b"?", pika.BasicProperties(reply_to=REPLY_TO))
        channel.queue_declare(queue, passive=True)  # the close comes asynchronously


def test_direct_reply_to_consumer_must_be_no_ack(amqp_clients: PikaClients) -> None:
    with channel_closed(PRECONDITION_FAILED):
        Consumer(amqp_clients.channel(), REPLY_TO, auto_ack=False)


def test_rpc_over_direct_reply_to_with_aio_pika(amqp_broker: BrokerProcess) -> None:
    request_queue = unique("aio-rpc")

    async def scenario() -> list[tuple[str, bytes]]:
        connection = await aio_pika.connect(url(amqp_broker))
        async with connection:
            server, client = await connection.channel(), await connection.channel()
            requests = await server.declare_queue(request_queue, exclusive=True)

            async def serve(request: aio_pika.abc.AbstractIncomingMessage) -> None:
                async with request.process():
                    reply = aio_pika.Message(
                        request.body.upper(), correlation_id=request.correlation_id
                    )
                    await server.default_exchange.publish(reply, routing_key=request.reply_to)

            await requests.consume(serve)
            replies: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
            reply_queue = await client.get_queue(REPLY_TO, ensure=False)
            await reply_queue.consume(replies.put, no_ack=True)
            for n, word in enumerate([b"ping", b"pong"]):
                request = aio_pika.Message(word, reply_to=REPLY_TO, correlation_id=str(n))
                await client.default_exchange.publish(request, routing_key=request_queue)
            got = [await replies.get() for _ in range(2)]
            return sorted((m.correlation_id or "", m.body) for m in got)

    assert run_async(scenario()) == [("0", b"PING"), ("1", b"PONG")]
