"""Exchanges: every type's routing (headers with x-match all and any), the default and
built-in exchanges, exchange-to-exchange bindings, and declare/delete semantics.

A publish and a basic.get on the same channel are processed in order, so a get right
after a publish sees what the publish routed; no confirms needed.
"""

from __future__ import annotations

from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from .amqp import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    NOT_FOUND,
    PRECONDITION_FAILED,
    PikaClients,
    channel_closed,
    connection_closed,
    get_all,
    unique,
)

pytestmark = pytest.mark.amqp("exchanges")


def bound_queue(
    channel: BlockingChannel, exchange: str, key: str = "", arguments: dict[str, Any] | None = None
) -> str:
    """A new exclusive queue bound to `exchange`."""
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, key, arguments)
    return queue


def publish_keys(channel: BlockingChannel, exchange: str, keys: list[str]) -> None:
    """Publish one message per routing key, its body the key."""
    for key in keys:
        channel.basic_publish(exchange, key, key.encode())


def test_direct_routes_by_exact_key(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    exchange = unique("direct")
    channel.exchange_declare(exchange, "direct", auto_delete=True)
    red, also_red = bound_queue(channel, exchange, "red"), bound_queue(channel, exchange, "red")
    green = bound_queue(channel, exchange, "green")
    channel.queue_bind(green, exchange, "lime")  # a second binding of the same queue
    publish_keys(channel, exchange, ["red", "green", "blue", "lime", "red.x"])
    assert get_all(channel, red) == [b"red"]
    assert get_all(channel, also_red) == [b"red"]
    assert get_all(channel, green) == [b"green", b"lime"]


def test_fanout_ignores_the_key(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    exchange = unique("fanout")
    channel.exchange_declare(exchange, "fanout", auto_delete=True)
    queues = [bound_queue(channel, exchange, key) for key in ("", "ignored")]
    publish_keys(channel, exchange, ["a", "b.c"])
    for queue in queues:
        assert get_all(channel, queue) == [b"a", b"b.c"]


def test_topic_patterns(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    exchange = unique("topic")
    channel.exchange_declare(exchange, "topic", auto_delete=True)
    patterns = ["*.orange.*", "*.*.rabbit", "lazy.#", "#", "a.#.z", "solo"]
    queues = {pattern: bound_queue(channel, exchange, pattern) for pattern in patterns}
    keys = ["quick.orange.rabbit", "lazy", "lazy.pink.rabbit", "a.z", "a.b.c.z", "solo", "x"]
    publish_keys(channel, exchange, keys)
    expected = {
        "*.orange.*": ["quick.orange.rabbit"],
        "*.*.rabbit": ["quick.orange.rabbit", "lazy.pink.rabbit"],
        "lazy.#": ["lazy", "lazy.pink.rabbit"],
        "#": keys,
        "a.#.z": ["a.z", "a.b.c.z"],
        "solo": ["solo"],
    }
    for pattern, queue in queues.items():
        assert get_all(channel, queue) == [k.encode() for k in expected[pattern]], pattern


def test_headers_x_match_all_and_any(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    exchange = unique("headers")
    channel.exchange_declare(exchange, "headers", auto_delete=True)
    match_all = bound_queue(channel, exchange, "", {"x-match": "all", "format": "pdf", "size": 1})
    match_any = bound_queue(channel, exchange, "", {"x-match": "any", "format": "pdf", "size": 1})
    default_all = bound_queue(channel, exchange, "", {"format": "pdf", "size": 1})
    messages = {
        b"both": {"format": "pdf", "size": 1},
        b"format": {"format": "pdf"},
        b"size": {"size": 1, "other": "x"},
        b"wrong-value": {"format": "zip", "size": 2},
        b"none": None,
    }
    for body, headers in messages.items():
        # the routing key does not matter to a headers exchange
        channel.basic_publish(exchange, "key", body, pika.BasicProperties(headers=headers))
    assert get_all(channel, match_all) == [b"both"]
    assert get_all(channel, default_all) == [b"both"]
    assert get_all(channel, match_any) == [b"both", b"format", b"size"]


def test_default_exchange_routes_by_queue_name_and_refuses_bindings(
    amqp_clients: PikaClients,
) -> None:
    channel = amqp_clients.channel()
    queue = channel.queue_declare(unique("named"), exclusive=True).method.queue
    channel.basic_publish("", queue, b"direct to the queue")
    channel.basic_publish("", unique("nobody"), b"dropped")
    assert get_all(channel, queue) == [b"direct to the queue"]
    with channel_closed(ACCESS_REFUSED):
        channel.queue_bind(queue, "", "other-key")


def test_built_in_exchanges_exist(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    for name in ("amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"):
        channel.exchange_declare(name, passive=True)


def test_exchange_to_exchange_bindings(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    source, destination = unique("e2e-source"), unique("e2e-destination")
    channel.exchange_declare(source, "topic")
    channel.exchange_declare(destination, "direct", auto_delete=True)
    queue = bound_queue(channel, destination, "k.1")
    channel.exchange_bind(destination, source, "k.*")
    publish_keys(channel, source, ["k.1", "k.2", "j.1"])
    assert get_all(channel, queue) == [b"k.1"]  # k.2 passes the source, not the destination
    channel.exchange_unbind(destination, source, "k.*")
    publish_keys(channel, source, ["k.1"])
    assert get_all(channel, queue) == []
    channel.exchange_delete(source)


def test_passive_declare(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    exchange = unique("passive")
    channel.exchange_declare(exchange, "fanout", auto_delete=True)
    channel.exchange_declare(exchange, "topic", passive=True)  # passive checks existence only
    with channel_closed(NOT_FOUND):
        channel.exchange_declare(unique("missing"), passive=True)


def test_redeclare_with_other_type_or_durability_fails(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    channel = connection.channel()
    exchange = unique("redeclare")
    channel.exchange_declare(exchange, "direct", durable=True)
    channel.exchange_declare(exchange, "direct", durable=True)  # an equivalent one is fine
    with channel_closed(PRECONDITION_FAILED):
        channel.exchange_declare(exchange, "fanout", durable=True)
    channel = connection.channel()
    with channel_closed(PRECONDITION_FAILED):
        channel.exchange_declare(exchange, "direct", durable=False)
    connection.channel().exchange_delete(exchange)


def test_auto_delete_exchange_goes_with_its_last_binding(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    channel = connection.channel()
    exchange = unique("auto-delete")
    channel.exchange_declare(exchange, "fanout", auto_delete=True)
    first, second = bound_queue(channel, exchange), bound_queue(channel, exchange)
    channel.queue_unbind(first, exchange, "")
    channel.exchange_declare(exchange, passive=True)  # one binding left
    channel.queue_unbind(second, exchange, "")
    with channel_closed(NOT_FOUND):
        channel.exchange_declare(exchange, passive=True)


def test_internal_exchange_refuses_publishes_but_routes_from_exchanges(
    amqp_clients: PikaClients,
) -> None:
    connection = amqp_clients.connection()
    channel = connection.channel()
    front, internal = unique("front"), unique("internal")
    channel.exchange_declare(front, "fanout", auto_delete=True)
    channel.exchange_declare(internal, "fanout", auto_delete=True, internal=True)
    channel.exchange_bind(internal, front)
    queue = bound_queue(channel, internal)
    channel.basic_publish(front, "", b"via front")
    assert get_all(channel, queue) == [b"via front"]
    with channel_closed(ACCESS_REFUSED):
        channel.basic_publish(internal, "", b"direct")
        channel.queue_declare(queue, passive=True)  # the refusal comes asynchronously


def test_alternate_exchange_takes_unroutable_messages(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    exchange, alternate = unique("with-ae"), unique("ae")
    channel.exchange_declare(alternate, "fanout", auto_delete=True)
    unrouted = bound_queue(channel, alternate)
    channel.exchange_declare(
        exchange, "direct", auto_delete=True, arguments={"alternate-exchange": alternate}
    )
    routed = bound_queue(channel, exchange, "known")
    publish_keys(channel, exchange, ["known", "unknown"])
    assert get_all(channel, routed) == [b"known"]
    assert get_all(channel, unrouted) == [b"unknown"]


def test_delete_if_unused(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    channel = connection.channel()
    exchange = unique("if-unused")
    channel.exchange_declare(exchange, "fanout")
    queue = bound_queue(channel, exchange)
    with channel_closed(PRECONDITION_FAILED):
        channel.exchange_delete(exchange, if_unused=True)
    channel = connection.channel()
    channel.queue_unbind(queue, exchange, "")
    channel.exchange_delete(exchange, if_unused=True)
    with channel_closed(NOT_FOUND):
        channel.exchange_declare(exchange, passive=True)


def test_reserved_names_are_refused(amqp_clients: PikaClients) -> None:
    with channel_closed(ACCESS_REFUSED):
        amqp_clients.channel().exchange_declare(unique("amq.mine"), "direct")


def test_unknown_type_is_a_connection_error(amqp_clients: PikaClients) -> None:
    with connection_closed(COMMAND_INVALID):
        amqp_clients.channel().exchange_declare(unique("bogus-type"), "no-such-type")
