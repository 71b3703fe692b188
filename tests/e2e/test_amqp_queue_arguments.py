"""Queue arguments: dead-lettering (x-death), TTLs and queue expiry, max-length with
drop-head and reject-publish, priorities, single active consumer."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from .amqp import (
    TIMEOUT,
    Consumer,
    Delivery,
    PikaClients,
    get,
    get_all,
    message_count,
    unique,
)


def dead_letter_queue(channel: BlockingChannel, key: str = "#") -> tuple[str, Consumer]:
    """A topic exchange and a queue bound to it, consumed: where dead letters go."""
    exchange = unique("dlx")
    channel.exchange_declare(exchange, "topic", auto_delete=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, key)
    return exchange, Consumer(channel, queue, auto_ack=True)


def declare(channel: BlockingChannel, **arguments: Any) -> str:
    """An exclusive queue with `arguments` (x-... names spelt with underscores)."""
    args = {"x-" + name.replace("_", "-"): value for name, value in arguments.items()}
    return channel.queue_declare(unique("args"), exclusive=True, arguments=args).method.queue


def x_death(delivery: Delivery) -> dict[str, Any]:
    """The one x-death entry of a message dead-lettered once."""
    (entry,) = delivery.properties.headers["x-death"]
    return entry


def wait_queue_expired(connection: BlockingConnection, queue: str, expires_ms: int) -> None:
    """Passive declares until one fails with 404. A declare counts as a use of the queue and
    restarts its expiry, so each waits out more than the expiry first."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        connection.sleep(2 * expires_ms / 1000)
        try:
            connection.channel().queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            assert exc.reply_code == 404, exc
            return
    raise AssertionError(f"queue {queue} still there after {TIMEOUT}s")


@pytest.mark.amqp("dead-letter")
def test_rejected_message_is_dead_lettered_with_x_death(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    dlx, dead = dead_letter_queue(channel)
    queue = declare(channel, dead_letter_exchange=dlx)
    props = pika.BasicProperties(headers={"mine": "kept"}, message_id="m-1")
    channel.basic_publish("", queue, b"rejected", props)
    channel.basic_reject(get(channel, queue, auto_ack=False).method.delivery_tag, requeue=False)
    letter = dead.wait(1)[0]
    assert (letter.body, letter.method.exchange, letter.method.routing_key) == (
        b"rejected",
        dlx,
        queue,  # the original key when there is no x-dead-letter-routing-key
    )
    assert (letter.properties.message_id, letter.properties.headers["mine"]) == ("m-1", "kept")
    death = x_death(letter)
    assert (death["count"], death["reason"], death["queue"]) == (1, "rejected", queue)
    assert (death["exchange"], death["routing-keys"]) == ("", [queue])
    assert isinstance(death["time"], datetime)
    headers = letter.properties.headers
    assert (headers["x-first-death-reason"], headers["x-first-death-queue"]) == ("rejected", queue)
    assert headers["x-first-death-exchange"] == ""
    assert message_count(channel, queue) == 0


@pytest.mark.amqp("dead-letter")
def test_nacked_messages_take_the_dead_letter_routing_key(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    dlx, dead = dead_letter_queue(channel, "dead.key")
    queue = declare(channel, dead_letter_exchange=dlx, dead_letter_routing_key="dead.key")
    for body in (b"1", b"2"):
        channel.basic_publish("", queue, body)
    get(channel, queue, auto_ack=False)
    tag = get(channel, queue, auto_ack=False).method.delivery_tag
    channel.basic_nack(tag, multiple=True, requeue=False)
    letters = dead.wait(2)
    assert [(d.body, d.method.routing_key) for d in letters] == [
        (b"1", "dead.key"),
        (b"2", "dead.key"),
    ]
    assert {x_death(d)["reason"] for d in letters} == {"rejected"}


@pytest.mark.amqp("dead-letter")
def test_dead_letters_through_the_default_exchange(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    target = channel.queue_declare("", exclusive=True).method.queue
    queue = declare(channel, dead_letter_exchange="", dead_letter_routing_key=target)
    channel.basic_publish("", queue, b"to the default exchange")
    channel.basic_reject(get(channel, queue, auto_ack=False).method.delivery_tag, requeue=False)
    letter = Consumer(channel, target, auto_ack=True).wait(1)[0]
    assert (letter.body, x_death(letter)["queue"]) == (b"to the default exchange", queue)


@pytest.mark.amqp("ttl")
def test_queue_message_ttl_expires_messages(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    dlx, dead = dead_letter_queue(channel)
    queue = declare(channel, message_ttl=100, dead_letter_exchange=dlx)
    channel.basic_publish("", queue, b"short-lived")
    letter = dead.wait(1)[0]
    assert (letter.body, x_death(letter)["reason"]) == (b"short-lived", "expired")
    assert message_count(channel, queue) == 0


@pytest.mark.amqp("ttl")
def test_per_message_expiration(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    dlx, dead = dead_letter_queue(channel)
    queue = declare(channel, dead_letter_exchange=dlx)
    channel.basic_publish("", queue, b"expires", pika.BasicProperties(expiration="100"))
    letter = dead.wait(1)[0]
    death = x_death(letter)
    assert (letter.body, death["reason"], death["original-expiration"]) == (
        b"expires",
        "expired",
        "100",
    )
    assert letter.properties.expiration is None  # dead letters do not expire again
    channel.basic_publish("", queue, b"stays", pika.BasicProperties(expiration="600000"))
    assert get(channel, queue).body == b"stays"


@pytest.mark.amqp("ttl")
def test_unused_queue_expires(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    queue = unique("expires")
    connection.channel().queue_declare(queue, arguments={"x-expires": 200})
    wait_queue_expired(connection, queue, 200)


@pytest.mark.amqp("max-length")
def test_max_length_drops_from_the_head(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    dlx, dead = dead_letter_queue(channel)
    queue = declare(channel, max_length=2, dead_letter_exchange=dlx)
    for body in (b"1", b"2", b"3", b"4"):
        channel.basic_publish("", queue, body)
    letters = dead.wait(2)
    assert [(d.body, x_death(d)["reason"]) for d in letters] == [(b"1", "maxlen"), (b"2", "maxlen")]
    assert get_all(channel, queue) == [b"3", b"4"]


@pytest.mark.amqp("max-length")
def test_max_length_reject_publish_nacks(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    channel.confirm_delivery()
    queue = declare(channel, max_length=2, overflow="reject-publish")
    channel.basic_publish("", queue, b"1")
    channel.basic_publish("", queue, b"2")
    with pytest.raises(pika.exceptions.NackError):
        channel.basic_publish("", queue, b"3")
    assert get_all(channel, queue) == [b"1", b"2"]
    channel.basic_publish("", queue, b"room again")  # acked once there is room
    assert get_all(channel, queue) == [b"room again"]


@pytest.mark.amqp("max-length")
def test_max_length_bytes_counts_bodies(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    queue = declare(channel, max_length_bytes=10)
    for body in (b"aaaa", b"bbbb", b"cccc"):
        channel.basic_publish("", queue, body)
    assert get_all(channel, queue) == [b"bbbb", b"cccc"]


@pytest.mark.amqp("priority")
def test_max_priority_orders_ready_messages(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    queue = declare(channel, max_priority=10)
    for body, priority in [
        (b"p1", 1),
        (b"p5-first", 5),
        (b"none", None),
        (b"p9", 9),
        (b"p5-second", 5),
        (b"p20", 20),  # above the maximum: counts as 10
    ]:
        channel.basic_publish("", queue, body, pika.BasicProperties(priority=priority))
    assert get_all(channel, queue) == [b"p20", b"p9", b"p5-first", b"p5-second", b"p1", b"none"]


@pytest.mark.amqp("single-active-consumer")
def test_single_active_consumer_hands_over_on_cancel(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    channel = connection.channel()
    queue = declare(channel, single_active_consumer=True)
    active, standby = Consumer(connection.channel(), queue), Consumer(connection.channel(), queue)
    for body in (b"1", b"2", b"3"):
        channel.basic_publish("", queue, body)
    assert [d.body for d in active.wait(3)] == [b"1", b"2", b"3"]
    active.channel.basic_ack(active.deliveries[0].method.delivery_tag)
    assert standby.deliveries == []  # it got nothing while the first was active
    active.channel.close()  # 2 and 3 were unacked: they go to the next consumer
    handed_over = standby.wait(2)
    assert [(d.body, d.method.redelivered) for d in handed_over] == [(b"2", True), (b"3", True)]
    channel.basic_publish("", queue, b"4")
    assert standby.wait(3)[2].body == b"4"
