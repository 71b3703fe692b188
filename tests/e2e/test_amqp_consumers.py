"""Consumers: tags, exclusive consumers, cancel from either side, prefetch per consumer and
per channel, the x-priority argument; and one consume-and-ack scenario on pika's
asynchronous SelectConnection."""

from __future__ import annotations

from typing import Any

import aio_pika
import amqp as pyamqp
import pika
import pytest

from .amqp import (
    ACCESS_REFUSED,
    NOT_ALLOWED,
    TIMEOUT,
    Consumer,
    PikaClients,
    channel_closed,
    get,
    get_all,
    message_count,
    parameters,
    queue_with,
    run_async,
    unique,
    url,
    wait_for,
)
from .brokers import ALICE, BrokerProcess
from .rawamqp import BASIC_CONSUME_OK, QUEUE_DECLARE_OK, RawAmqp, basic_consume, queue_declare

pytestmark = pytest.mark.amqp("basic")


def test_server_generates_distinct_consumer_tags(amqp_broker: BrokerProcess) -> None:
    """pika makes up its own tags; py-amqp sends an empty one and uses the broker's."""
    connection = pyamqp.Connection(
        f"{amqp_broker.host}:{amqp_broker.amqp_port}", userid=ALICE[0], password=ALICE[1]
    )
    connection.connect()
    try:
        channel = connection.channel()
        queue, _messages, _consumers = channel.queue_declare("", exclusive=True)
        tags = {channel.basic_consume(queue, callback=lambda _m: None) for _ in range(3)}
        assert len(tags) == 3 and all(tags)
    finally:
        connection.close()


def test_a_reused_consumer_tag_is_530(amqp_broker: BrokerProcess) -> None:
    """pika refuses to send this itself, so a raw client does."""
    assert amqp_broker.amqp_port
    client = RawAmqp(amqp_broker.host, amqp_broker.amqp_port)
    try:
        client.handshake()
        client.open_channel(1)
        client.send(queue_declare(1, unique("tags")))
        queue_ok = client.expect(QUEUE_DECLARE_OK)
        queue = queue_ok.arguments[1 : 1 + queue_ok.arguments[0]].decode()
        client.send(basic_consume(1, queue, "same"))
        client.expect(BASIC_CONSUME_OK)
        client.send(basic_consume(1, queue, "same"))
        assert client.expect_connection_close().reply_code == NOT_ALLOWED
    finally:
        client.close()


def test_exclusive_consumer_keeps_others_out(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    queue = queue_with(connection.channel(), b"only mine")
    exclusive = Consumer(connection.channel(), queue, exclusive=True)
    with channel_closed(ACCESS_REFUSED):
        Consumer(connection.channel(), queue)
    assert exclusive.wait(1)[0].body == b"only mine"
    exclusive.channel.basic_cancel(exclusive.tag)
    Consumer(connection.channel(), queue)  # free again, for a shared consumer
    with channel_closed(ACCESS_REFUSED):
        Consumer(connection.channel(), queue, exclusive=True)  # not while one consumes


def test_client_cancel_stops_deliveries(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    queue = queue_with(channel, b"before")
    consumer = Consumer(channel, queue, auto_ack=True)
    consumer.wait(1)
    channel.basic_cancel(consumer.tag)  # waits for cancel-ok
    channel.basic_publish("", queue, b"after")
    assert get_all(channel, queue) == [b"after"]
    assert consumer.bodies() == [b"before"]


def test_deleting_the_queue_cancels_its_consumers(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    queue = unique("cancelled")
    connection.channel().queue_declare(queue)
    consumer = Consumer(connection.channel(), queue)
    amqp_clients.channel().queue_delete(queue)
    consumer.wait_cancelled()
    assert consumer.channel.is_open  # basic.cancel, not a channel error


def test_prefetch_per_consumer(amqp_clients: PikaClients) -> None:
    """With prefetch 1 the second message stays in the queue (another channel can get it)
    until the first is acked."""
    connection = amqp_clients.connection()
    channel = connection.channel()
    queue = queue_with(channel, b"1", b"2", b"3")
    consuming = connection.channel()
    consuming.basic_qos(prefetch_count=1)
    consumer = Consumer(consuming, queue)
    assert consumer.wait(1)[0].body == b"1"
    assert get(channel, queue, auto_ack=True).body == b"2"
    consuming.basic_ack(consumer.deliveries[0].method.delivery_tag)
    assert consumer.wait(2)[1].body == b"3"


def test_prefetch_per_channel_is_shared_by_its_consumers(amqp_clients: PikaClients) -> None:
    """global=True: RabbitMQ's per-channel limit across the channel's consumers."""
    connection = amqp_clients.connection()
    channel = connection.channel()
    queues = [queue_with(channel, b"1", b"2", b"3") for _ in range(2)]
    consuming = connection.channel()
    consuming.basic_qos(prefetch_count=2, global_qos=True)
    consumers = [Consumer(consuming, queue) for queue in queues]

    def received() -> int:
        return sum(len(c.deliveries) for c in consumers)

    wait_for(connection, lambda: received() >= 2, "2 deliveries on the channel")
    left = sum(len(get_all(channel, queue)) for queue in queues)
    assert (received(), left) == (2, 4)


def test_prefetch_per_consumer_and_per_channel_together(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    channel = connection.channel()
    queues = [queue_with(channel, b"1", b"2", b"3") for _ in range(2)]
    consuming = connection.channel()
    consuming.basic_qos(prefetch_count=1, global_qos=False)  # each consumer
    consuming.basic_qos(prefetch_count=10, global_qos=True)  # the channel
    consumers = [Consumer(consuming, queue) for queue in queues]
    for consumer in consumers:
        consumer.wait(1)
    assert [message_count(channel, queue) for queue in queues] == [2, 2]


def test_consumer_priority_gets_messages_first(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    channel = connection.channel()
    queue = queue_with(channel)
    high_channel, low_channel = connection.channel(), connection.channel()
    high_channel.basic_qos(prefetch_count=2)
    high = Consumer(high_channel, queue, arguments={"x-priority": 10})
    low = Consumer(low_channel, queue)
    for body in (b"1", b"2", b"3", b"4", b"5"):
        channel.basic_publish("", queue, body)
    high.wait(2)
    low.wait(3)
    assert high.bodies() == [b"1", b"2"]  # the high one while it has room
    assert low.bodies() == [b"3", b"4", b"5"]


def test_select_connection_consumes_and_acks(amqp_broker: BrokerProcess) -> None:
    """pika's asynchronous adapter: declare, publish, consume and ack three messages,
    then see the queue empty, all from callbacks on its ioloop."""
    queue = unique("select")
    acked: list[bytes] = []
    result: dict[str, Any] = {}

    def on_open(connection: pika.SelectConnection) -> None:
        connection.channel(on_open_callback=on_channel)

    def on_channel(channel: Any) -> None:
        channel.queue_declare(queue, exclusive=True, callback=lambda _f: on_declared(channel))

    def on_declared(channel: Any) -> None:
        for body in (b"1", b"2", b"3"):
            channel.basic_publish("", queue, body)
        channel.basic_consume(queue, lambda *args: on_message(channel, *args))

    def on_message(channel: Any, _ch: Any, method: Any, _props: Any, body: bytes) -> None:
        channel.basic_ack(method.delivery_tag)
        acked.append(body)
        if len(acked) == 3:
            channel.queue_declare(queue, passive=True, callback=on_counted)

    def on_counted(frame: Any) -> None:
        result["left"] = frame.method.message_count
        connection.close()

    def on_failed(_connection: Any, error: BaseException) -> None:
        result["error"] = error
        connection.ioloop.stop()

    connection = pika.SelectConnection(
        parameters(amqp_broker),
        on_open_callback=on_open,
        on_open_error_callback=on_failed,
        on_close_callback=lambda *_: connection.ioloop.stop(),
    )
    connection.ioloop.call_later(TIMEOUT, connection.ioloop.stop)
    connection.ioloop.start()
    if connection.is_open:
        connection.close()
        connection.ioloop.start()  # until closed
    assert "error" not in result, result
    assert (acked, result.get("left")) == ([b"1", b"2", b"3"], 0)


def test_aio_pika_consumes_with_prefetch_one_and_acks(amqp_broker: BrokerProcess) -> None:
    bodies = [str(n).encode() for n in range(5)]

    async def scenario() -> tuple[list[bytes], int]:
        connection = await aio_pika.connect(url(amqp_broker))
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=1)
            queue = await channel.declare_queue(unique("aio-consume"), exclusive=True)
            for body in bodies:
                await channel.default_exchange.publish(aio_pika.Message(body), queue.name)
            received = []
            async with queue.iterator() as messages:
                async for message in messages:
                    received.append(message.body)
                    await message.ack()
                    if len(received) == len(bodies):
                        break
            declared = await channel.declare_queue(queue.name, passive=True)
            return received, declared.declaration_result.message_count

    assert run_async(scenario()) == (bodies, 0)
