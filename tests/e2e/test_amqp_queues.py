"""Queues: declare (passive, durable, exclusive, auto-delete, server-named), bind, unbind,
purge, delete with if-unused and if-empty, and the 403/404/405/406 channel errors."""

from __future__ import annotations

import pytest

from .amqp import (
    ACCESS_REFUSED,
    NOT_FOUND,
    PRECONDITION_FAILED,
    RESOURCE_LOCKED,
    Consumer,
    PikaClients,
    channel_closed,
    get_all,
    message_count,
    unique,
)

pytestmark = pytest.mark.amqp("queues")


def test_declare_ok_counts_messages_and_consumers(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    channel = connection.channel()
    queue = unique("counts")
    declared = channel.queue_declare(queue, exclusive=True).method
    assert (declared.queue, declared.message_count, declared.consumer_count) == (queue, 0, 0)
    for body in (b"1", b"2"):
        channel.basic_publish("", queue, body)
    consumer = Consumer(connection.channel(), queue)
    channel.basic_publish("", queue, b"3")
    assert [d.body for d in consumer.wait(3)] == [b"1", b"2", b"3"]
    declared = channel.queue_declare(queue, passive=True).method  # unacked ones don't count
    assert (declared.message_count, declared.consumer_count) == (0, 1)


def test_passive_declare_of_a_missing_queue_is_404(amqp_clients: PikaClients) -> None:
    with channel_closed(NOT_FOUND):
        amqp_clients.channel().queue_declare(unique("missing"), passive=True)


def test_server_named_queues(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    first = channel.queue_declare("", exclusive=True).method.queue
    second = channel.queue_declare("", exclusive=True).method.queue
    assert first and second and first != second
    channel.basic_publish("", first, b"by its name")
    assert get_all(channel, first) == [b"by its name"]


def test_redeclare_with_other_properties_is_406(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    queue = unique("redeclare")
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments={"x-max-length": 10})
    channel.queue_declare(queue, durable=True, arguments={"x-max-length": 10})  # equivalent
    with channel_closed(PRECONDITION_FAILED):
        channel.queue_declare(queue, durable=False, arguments={"x-max-length": 10})
    with channel_closed(PRECONDITION_FAILED):
        connection.channel().queue_declare(queue, durable=True, arguments={"x-max-length": 20})
    connection.channel().queue_delete(queue)


def test_exclusive_queue_belongs_to_its_connection(amqp_clients: PikaClients) -> None:
    owner = amqp_clients.connection()
    queue = unique("exclusive")
    owner.channel().queue_declare(queue, exclusive=True)
    other = amqp_clients.connection()
    with channel_closed(RESOURCE_LOCKED):
        other.channel().queue_declare(queue, exclusive=True)
    with channel_closed(RESOURCE_LOCKED):
        other.channel().queue_declare(queue, passive=True)
    with channel_closed(RESOURCE_LOCKED):
        other.channel().basic_consume(queue, lambda *_: None)
    owner.close()  # an exclusive queue goes with its connection
    with channel_closed(NOT_FOUND):
        other.channel().queue_declare(queue, passive=True)


def test_auto_delete_queue_goes_with_its_last_consumer(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    channel = connection.channel()
    queue = unique("auto-delete")
    channel.queue_declare(queue, auto_delete=True)
    first, second = Consumer(connection.channel(), queue), Consumer(connection.channel(), queue)
    first.channel.basic_cancel(first.tag)
    assert channel.queue_declare(queue, passive=True).method.consumer_count == 1
    second.channel.basic_cancel(second.tag)
    with channel_closed(NOT_FOUND):
        channel.queue_declare(queue, passive=True)


def test_bind_and_unbind(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    key = unique("key")
    channel.queue_bind(queue, "amq.direct", key)
    channel.basic_publish("amq.direct", key, b"bound")
    channel.queue_unbind(queue, "amq.direct", key)
    channel.basic_publish("amq.direct", key, b"unbound")
    assert get_all(channel, queue) == [b"bound"]


def test_bind_to_a_missing_exchange_or_queue_is_404(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    with channel_closed(NOT_FOUND):
        channel.queue_bind(queue, unique("no-exchange"), "k")
    with channel_closed(NOT_FOUND):
        connection.channel().queue_bind(unique("no-queue"), "amq.direct", "k")


def test_purge_returns_the_count(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    for body in (b"1", b"2", b"3"):
        channel.basic_publish("", queue, body)
    assert channel.queue_purge(queue).method.message_count == 3
    assert message_count(channel, queue) == 0


def test_delete_if_unused_and_if_empty(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    channel = connection.channel()
    queue = unique("delete")
    channel.queue_declare(queue)
    channel.basic_publish("", queue, b"kept")
    consumer = Consumer(connection.channel(), queue)
    with channel_closed(PRECONDITION_FAILED):
        channel.queue_delete(queue, if_unused=True)
    consumer.wait(1)
    consumer.channel.close()  # the unacked message returns to the queue
    channel = connection.channel()
    with channel_closed(PRECONDITION_FAILED):
        channel.queue_delete(queue, if_empty=True)
    channel = connection.channel()
    assert channel.queue_delete(queue, if_unused=True).method.message_count == 1
    with channel_closed(NOT_FOUND):
        channel.queue_declare(queue, passive=True)


def test_deleting_a_missing_queue_succeeds(amqp_clients: PikaClients) -> None:
    """RabbitMQ answers delete-ok, not 404, so that deletes are idempotent."""
    assert amqp_clients.channel().queue_delete(unique("never")).method.message_count == 0


def test_reserved_names_are_refused(amqp_clients: PikaClients) -> None:
    with channel_closed(ACCESS_REFUSED):
        amqp_clients.channel().queue_declare(unique("amq.mine"))
