"""Publisher confirms (pika one by one, aiormq pipelined: 10,000 persistent messages to a
durable queue) and mandatory publishes returned with basic.return 312 NO_ROUTE."""

from __future__ import annotations

import asyncio
from typing import Any

import aiormq
import pika
import pika.exceptions
import pytest
from pamqp import commands as spec

from .amqp import NO_ROUTE, PikaClients, get, message_count, run_async, unique, url, wait_for
from .brokers import BrokerProcess

PERSISTENT = spec.Basic.Properties(delivery_mode=2)
CONFIRMED_TOTAL = 10_000
WINDOW = 500  # publishes awaiting their confirm at a time


@pytest.mark.amqp("confirms")
def test_confirm_select_acks_each_publish(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    channel.confirm_delivery()
    queue = channel.queue_declare("", exclusive=True).method.queue
    for body in (b"1", b"2", b"3"):
        channel.basic_publish("", queue, body)  # returns once acked, raises if nacked
    channel.basic_publish("", unique("nobody"), b"unroutable, not mandatory: acked too")
    assert message_count(channel, queue) == 3


async def publish_confirmed(
    channel: aiormq.abc.AbstractChannel, queue: str, numbers: range
) -> list[Any]:
    """Publish each number as a persistent message, up to WINDOW unconfirmed at a time;
    the confirm frames in order of the numbers."""
    window = asyncio.Semaphore(WINDOW)

    async def one(n: int) -> Any:
        async with window:
            return await channel.basic_publish(
                str(n).encode(), routing_key=queue, properties=PERSISTENT
            )

    return await asyncio.gather(*(one(n) for n in numbers))


@pytest.mark.amqp("confirms")
def test_ten_thousand_persistent_messages_are_all_confirmed(amqp_broker: BrokerProcess) -> None:
    queue = unique("confirmed")

    async def scenario() -> tuple[list[Any], int]:
        connection = await aiormq.connect(url(amqp_broker))
        try:
            channel = await connection.channel(publisher_confirms=True)
            await channel.queue_declare(queue, durable=True)
            confirms = await publish_confirmed(channel, queue, range(CONFIRMED_TOTAL))
            declared = await channel.queue_declare(queue, passive=True)
            await channel.queue_delete(queue)
            return confirms, declared.message_count
        finally:
            await connection.close()

    confirms, stored = run_async(scenario(), timeout=120)
    assert all(isinstance(c, spec.Basic.Ack) for c in confirms)
    assert stored == CONFIRMED_TOTAL


@pytest.mark.amqp("mandatory")
def test_unroutable_mandatory_publish_is_returned(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    channel = connection.channel()
    returned: list[tuple[Any, Any, bytes]] = []
    channel.add_on_return_callback(lambda _ch, *message: returned.append(message))
    key = unique("nobody")
    props = pika.BasicProperties(message_id="m-1", headers={"h": "v"})
    channel.basic_publish("amq.direct", key, b"come back", props, mandatory=True)
    wait_for(connection, lambda: bool(returned), "basic.return")
    method, got_props, body = returned[0]
    assert (method.reply_code, method.reply_text) == (NO_ROUTE, "NO_ROUTE")
    assert (method.exchange, method.routing_key, body) == ("amq.direct", key, b"come back")
    assert (got_props.message_id, got_props.headers) == ("m-1", {"h": "v"})


@pytest.mark.amqp("mandatory")
def test_routable_mandatory_publish_is_delivered(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    channel.confirm_delivery()  # an UnroutableError would surface here
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", queue, b"routed", mandatory=True)
    assert get(channel, queue).body == b"routed"


@pytest.mark.amqp("mandatory")
def test_returned_mandatory_publish_is_still_confirmed(amqp_clients: PikaClients) -> None:
    """With confirms, the basic.return comes before the ack (pika raises UnroutableError)."""
    channel = amqp_clients.channel()
    channel.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError) as info:
        channel.basic_publish("", unique("nobody"), b"x", mandatory=True)
    (message,) = info.value.messages
    assert message.method.reply_code == NO_ROUTE


@pytest.mark.amqp("mandatory")
def test_aiormq_sees_the_return_before_the_confirm(amqp_broker: BrokerProcess) -> None:
    async def scenario() -> Any:
        connection = await aiormq.connect(url(amqp_broker))
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=False)
            return await channel.basic_publish(
                b"lost", exchange="amq.topic", routing_key=unique("nobody"), mandatory=True
            )
        finally:
            await connection.close()

    returned = run_async(scenario())
    assert isinstance(returned.delivery, spec.Basic.Return)
    assert (returned.delivery.reply_code, returned.body) == (NO_ROUTE, b"lost")
