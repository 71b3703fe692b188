"""basic.publish, deliver, get/get-empty, ack/nack/reject (multiple, requeue, redelivered)
and recover, with pika's blocking connection."""

from __future__ import annotations

import pytest

from .amqp import (
    PRECONDITION_FAILED,
    Consumer,
    PikaClients,
    channel_closed,
    get,
    get_all,
    message_count,
    queue_with,
    unique,
)

pytestmark = pytest.mark.amqp("basic")


def test_deliver_carries_tag_exchange_key_and_redelivered(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    key = unique("key")
    channel.queue_bind(queue, "amq.direct", key)
    consumer = Consumer(channel, queue, consumer_tag="my-tag")
    channel.basic_publish("amq.direct", key, b"one")
    channel.basic_publish("", queue, b"two")
    first, second = consumer.wait(2)
    assert (first.method.consumer_tag, first.method.delivery_tag) == ("my-tag", 1)
    assert (first.method.exchange, first.method.routing_key, first.body) == (
        "amq.direct",
        key,
        b"one",
    )
    assert (second.method.delivery_tag, second.method.exchange, second.method.routing_key) == (
        2,
        "",
        queue,
    )
    assert not first.method.redelivered and not second.method.redelivered


def test_get_and_get_empty(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    queue = queue_with(channel, b"a", b"b")
    first = get(channel, queue)
    assert (first.body, first.method.message_count, first.method.redelivered) == (b"a", 1, False)
    assert (first.method.exchange, first.method.routing_key) == ("", queue)
    assert get(channel, queue).method.message_count == 0
    assert channel.basic_get(queue, auto_ack=True) == (None, None, None)  # get-empty


def test_unacked_messages_return_redelivered_when_the_channel_closes(
    amqp_clients: PikaClients,
) -> None:
    connection = amqp_clients.connection()
    channel = connection.channel()
    queue = queue_with(channel, b"a", b"b")
    taker = connection.channel()
    assert get(taker, queue, auto_ack=False).body == b"a"
    assert get(taker, queue, auto_ack=False).body == b"b"
    assert message_count(channel, queue) == 0
    taker.close()
    redelivered = [get(channel, queue) for _ in range(2)]
    assert [(d.body, d.method.redelivered) for d in redelivered] == [(b"a", True), (b"b", True)]


def test_auto_ack_deliveries_do_not_return(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    channel = connection.channel()
    queue = queue_with(channel, b"a", b"b")
    consumer = Consumer(connection.channel(), queue, auto_ack=True)
    consumer.wait(2)
    consumer.channel.close()
    assert message_count(channel, queue) == 0


def test_ack_multiple(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    channel = connection.channel()
    queue = queue_with(channel, b"1", b"2", b"3", b"4")
    consumer = Consumer(connection.channel(), queue)
    deliveries = consumer.wait(4)
    consumer.channel.basic_ack(deliveries[2].method.delivery_tag, multiple=True)  # 1 to 3
    consumer.channel.close()
    assert get_all(channel, queue) == [b"4"]


def test_nack_multiple_with_requeue_redelivers(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    queue = queue_with(channel, b"1", b"2", b"3")
    consumer = Consumer(channel, queue)
    first = consumer.wait(3)
    channel.basic_nack(first[1].method.delivery_tag, multiple=True, requeue=True)  # 1 and 2
    again = consumer.wait(5)[3:]
    assert [(d.body, d.method.redelivered) for d in again] == [(b"1", True), (b"2", True)]
    assert again[0].method.delivery_tag == 4  # a new tag for each delivery
    for delivery in (first[2], *again):
        channel.basic_ack(delivery.method.delivery_tag)
    channel.basic_cancel(consumer.tag)
    assert message_count(channel, queue) == 0


def test_nack_and_reject_without_requeue_drop(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    queue = queue_with(channel, b"1", b"2", b"3", b"4")
    consumer = Consumer(channel, queue)
    deliveries = consumer.wait(4)
    channel.basic_nack(deliveries[1].method.delivery_tag, multiple=True, requeue=False)
    channel.basic_reject(deliveries[2].method.delivery_tag, requeue=False)
    channel.basic_reject(deliveries[3].method.delivery_tag, requeue=True)
    redelivered = consumer.wait(5)[4]
    assert (redelivered.body, redelivered.method.redelivered) == (b"4", True)
    channel.basic_ack(redelivered.method.delivery_tag)
    channel.basic_cancel(consumer.tag)
    assert message_count(channel, queue) == 0


def test_single_nack_leaves_the_others_unacked(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    channel = connection.channel()
    queue = queue_with(channel, b"1", b"2", b"3")
    taker = connection.channel()
    tags = [get(taker, queue, auto_ack=False).method.delivery_tag for _ in range(3)]
    taker.basic_nack(tags[1], multiple=False, requeue=True)
    requeued = get(channel, queue)
    assert (requeued.body, requeued.method.redelivered) == (b"2", True)
    taker.basic_ack(tags[2], multiple=False)
    taker.close()  # 1 is still unacked: it comes back
    assert get_all(channel, queue) == [b"1"]


def test_acking_an_unknown_tag_is_406(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    queue = queue_with(channel, b"1")
    tag = get(channel, queue, auto_ack=False).method.delivery_tag
    channel.basic_ack(tag)
    with channel_closed(PRECONDITION_FAILED):
        channel.basic_ack(tag)  # twice
        channel.queue_declare(queue, passive=True)  # the close comes asynchronously


def test_recover_redelivers_unacked_messages(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    queue = queue_with(channel, b"1", b"2")
    consumer = Consumer(channel, queue)
    consumer.wait(2)
    channel.basic_recover(requeue=True)
    again = consumer.wait(4)[2:]
    assert sorted((d.body, d.method.redelivered) for d in again) == [(b"1", True), (b"2", True)]
