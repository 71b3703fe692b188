"""AMQP 0-9-1 helpers for the e2e tests: the feature gate, connection URLs, pika blocking
connections kept for teardown, consumers that collect deliveries, assertions on channels
and connections the broker closes, and a runner for asyncio clients (aio-pika, aiormq).

A test marked `@pytest.mark.amqp("feature")` shows one feature of the AMQP issue; it runs
against our broker and RabbitMQ (but the cross-protocol ones, which test our mapping), not
against Mosquitto (conftest.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.spec import Basic, BasicProperties

from .brokers import ALICE, BrokerProcess

FEATURES = frozenset(
    {
        "connection",
        "heartbeat",
        "exchanges",
        "queues",
        "basic",
        "properties",
        "confirms",
        "mandatory",
        "tx",
        "reply-to",
        "dead-letter",
        "ttl",
        "max-length",
        "priority",
        "single-active-consumer",
        "large-message",
        "durability",
        "kombu",
        "celery",
        "cross-protocol",
        "bad-input",
        "blocked",
    }
)

TIMEOUT = 5.0
T = TypeVar("T")

NO_ROUTE = 312
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540


def unique(prefix: str) -> str:
    """A queue or exchange name no other test uses: tests share a broker."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def url(broker: BrokerProcess, user: tuple[str, str] = ALICE, vhost: str = "/") -> str:
    assert broker.amqp_port, "no amqp listener"
    return f"amqp://{user[0]}:{user[1]}@{broker.host}:{broker.amqp_port}/{quote(vhost, safe='')}"


def parameters(
    broker: BrokerProcess, user: tuple[str, str] = ALICE, **kwargs: Any
) -> pika.ConnectionParameters:
    assert broker.amqp_port, "no amqp listener"
    kwargs.setdefault("connection_attempts", 1)
    kwargs.setdefault("blocked_connection_timeout", None)
    return pika.ConnectionParameters(
        broker.host,
        broker.amqp_port,
        credentials=pika.PlainCredentials(*user),
        **kwargs,
    )


class PikaClients:
    """pika BlockingConnections to one broker, all closed at teardown."""

    def __init__(self, broker: BrokerProcess) -> None:
        self.broker = broker
        self._open: list[BlockingConnection] = []

    def connection(self, user: tuple[str, str] = ALICE, **kwargs: Any) -> BlockingConnection:
        """A new connection; keyword arguments go to pika.ConnectionParameters."""
        connection = BlockingConnection(parameters(self.broker, user, **kwargs))
        self._open.append(connection)
        return connection

    def channel(self, **kwargs: Any) -> BlockingChannel:
        """A channel on a new connection of its own."""
        return self.connection(**kwargs).channel()

    def close_all(self) -> None:
        for connection in self._open:
            if connection.is_open:
                connection.close()


@dataclass(frozen=True)
class Delivery:
    method: Basic.Deliver | Basic.GetOk
    properties: BasicProperties
    body: bytes


def wait_for(
    connection: BlockingConnection, done: Callable[[], bool], what: str, timeout: float = TIMEOUT
) -> None:
    """Process the connection's events until `done()` (AssertionError after `timeout`)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        connection.process_data_events(time_limit=0.05)


class Consumer:
    """basic.consume on a blocking channel; deliveries collect in `deliveries`, and a
    basic.cancel from the broker sets `cancelled`."""

    def __init__(
        self, channel: BlockingChannel, queue: str, *, auto_ack: bool = False, **kwargs: Any
    ) -> None:
        self.channel = channel
        self.deliveries: list[Delivery] = []
        self.cancelled = False
        channel.add_on_cancel_callback(self._on_cancel)
        self.tag: str = channel.basic_consume(queue, self._on_message, auto_ack, **kwargs)

    def _on_message(self, _ch: Any, method: Any, properties: Any, body: bytes) -> None:
        self.deliveries.append(Delivery(method, properties, body))

    def _on_cancel(self, frame: Any) -> None:
        if frame.method.consumer_tag == self.tag:
            self.cancelled = True

    def wait(self, count: int, timeout: float = TIMEOUT) -> list[Delivery]:
        """The first `count` deliveries, once they have arrived."""
        wait_for(
            self.channel.connection,
            lambda: len(self.deliveries) >= count,
            f"{count} deliveries to {self.tag} (got {len(self.deliveries)})",
            timeout,
        )
        return self.deliveries[:count]

    def bodies(self) -> list[bytes]:
        return [d.body for d in self.deliveries]

    def wait_cancelled(self) -> None:
        wait_for(self.channel.connection, lambda: self.cancelled, f"basic.cancel of {self.tag}")


def get(channel: BlockingChannel, queue: str, *, auto_ack: bool = True) -> Delivery:
    """basic.get that must return a message."""
    method, properties, body = channel.basic_get(queue, auto_ack)
    assert method is not None, f"queue {queue} is empty"
    return Delivery(method, properties, body)


def get_all(channel: BlockingChannel, queue: str) -> list[bytes]:
    """basic.get (auto-ack) until get-empty: the bodies the queue held, in order."""
    bodies = []
    while True:
        method, _properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


def queue_with(channel: BlockingChannel, *bodies: bytes) -> str:
    """A new exclusive queue holding `bodies`."""
    queue = channel.queue_declare("", exclusive=True).method.queue
    for body in bodies:
        channel.basic_publish("", queue, body)
    return queue


def message_count(channel: BlockingChannel, queue: str) -> int:
    """The ready messages in `queue` (a passive declare)."""
    return channel.queue_declare(queue, passive=True).method.message_count


@contextmanager
def channel_closed(code: int) -> Iterator[None]:
    """The block must make the broker close the channel with reply code `code`."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        yield
    assert info.value.reply_code == code, info.value


@contextmanager
def connection_closed(code: int) -> Iterator[None]:
    """The block must make the broker close the connection with reply code `code`."""
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        yield
    assert info.value.reply_code == code, info.value


def run_async(main: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run an asyncio client to completion on a fresh event loop in this (sync) test's
    thread, where no trio loop runs; the timeout bounds the whole scenario."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await main

    return asyncio.run(bounded())
