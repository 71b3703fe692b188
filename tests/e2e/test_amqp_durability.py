"""Durability: durable exchanges, queues, bindings and persistent messages survive a
graceful restart and a SIGKILL; transient messages and non-durable queues do not.
Each test has a broker of its own, restarted on the same data."""

from __future__ import annotations

import asyncio

import aiormq
import pika
import pytest
from pamqp import commands as spec

from .amqp import NOT_FOUND, PikaClients, channel_closed, get_all, run_async, unique, url
from .brokers import BrokerFactory, BrokerProcess

pytestmark = pytest.mark.amqp("durability")

PERSISTENT = pika.BasicProperties(delivery_mode=2)
TRANSIENT = pika.BasicProperties(delivery_mode=1)
PERSISTENT_AIORMQ = spec.Basic.Properties(delivery_mode=2)
TOTAL = 5000
KILL_AFTER_CONFIRMS = 2000
WINDOW = 100


def test_graceful_restart_keeps_durable_state(broker_factory: BrokerFactory) -> None:
    broker = broker_factory()
    exchange, queue, transient_queue = unique("durable-x"), unique("durable-q"), unique("temp-q")
    clients = PikaClients(broker)
    channel = clients.channel()
    channel.confirm_delivery()
    channel.exchange_declare(exchange, "direct", durable=True)
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, exchange, "key")
    channel.queue_declare(transient_queue, durable=False)
    for n in range(10):
        channel.basic_publish(exchange, "key", f"persistent {n}".encode(), PERSISTENT)
        channel.basic_publish(exchange, "key", f"transient {n}".encode(), TRANSIENT)
    clients.close_all()

    assert broker.terminate() == 0
    broker.start()

    clients = PikaClients(broker)
    try:
        channel = clients.channel()
        expected = [f"persistent {n}".encode() for n in range(10)]
        assert get_all(channel, queue) == expected  # in order, and no transient one
        channel.basic_publish(exchange, "key", b"binding kept")  # the exchange and binding too
        assert get_all(channel, queue) == [b"binding kept"]
        with channel_closed(NOT_FOUND):
            channel.queue_declare(transient_queue, passive=True)
    finally:
        clients.close_all()


async def publish_until_killed(broker: BrokerProcess, queue: str) -> set[int]:
    """Publish 1..TOTAL persistently, up to WINDOW unconfirmed at a time, and SIGKILL the
    broker once KILL_AFTER_CONFIRMS are confirmed. Returns the numbers that were acked."""
    connection = await aiormq.connect(url(broker))
    channel = await connection.channel(publisher_confirms=True)
    await channel.queue_declare(queue, durable=True)
    window = asyncio.Semaphore(WINDOW)
    confirmed: set[int] = set()
    killed = asyncio.Event()

    async def one(n: int) -> None:
        async with window:
            if killed.is_set():
                return
            body = str(n).encode()
            confirm = await channel.basic_publish(
                body, routing_key=queue, properties=PERSISTENT_AIORMQ
            )
            if isinstance(confirm, spec.Basic.Ack):  # a nack promises nothing
                confirmed.add(n)
            if len(confirmed) == KILL_AFTER_CONFIRMS:
                broker.kill()
                killed.set()

    # the publishes in flight at the kill fail with the connection
    await asyncio.gather(*(one(n) for n in range(1, TOTAL + 1)), return_exceptions=True)
    assert killed.is_set(), "the broker was not killed: too few confirms"
    return confirmed


def test_confirmed_messages_survive_sigkill(broker_factory: BrokerFactory) -> None:
    broker = broker_factory()
    queue = unique("crash")
    confirmed = run_async(publish_until_killed(broker, queue), timeout=60)

    broker.start()
    clients = PikaClients(broker)
    try:
        numbers = [int(body) for body in get_all(clients.channel(), queue)]
    finally:
        clients.close_all()
    assert set(numbers) <= set(range(1, TOTAL + 1))
    lost = confirmed - set(numbers)
    assert not lost, f"{len(lost)} confirmed messages lost, e.g. {sorted(lost)[:10]}"
