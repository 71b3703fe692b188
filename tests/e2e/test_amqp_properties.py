"""Every content property round-trips: all basic properties, headers with nested tables
and arrays, timestamps, decimals and byte arrays; between pika, aio-pika and aiormq, and
byte for byte for every field type tag."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aio_pika
import aiormq
import pika
import pytest

from .amqp import (
    PRECONDITION_FAILED,
    Consumer,
    PikaClients,
    channel_closed,
    get,
    run_async,
    unique,
    url,
)
from .brokers import BrokerProcess
from .rawamqp import (
    BASIC_GET_OK,
    HEADERS_FLAG,
    QUEUE_DECLARE_OK,
    RawAmqp,
    basic_get,
    basic_publish,
    body,
    content_header,
    longstr,
    parse_content_header,
    queue_declare,
    shortstr,
)

pytestmark = pytest.mark.amqp("properties")

HEADERS: dict[str, Any] = {
    "text": "plain",
    "unicode": "zażółć gęślą jaźń",
    "int": 42,
    "negative": -7,
    "big": 2**40,
    "true": True,
    "false": False,
    "decimal": Decimal("3.14"),
    "timestamp": datetime(2024, 2, 29, 12, 30, 45, tzinfo=UTC),
    "bytes": b"\x00\x01\xfe\xff",
    "void": None,
    "nested": {"level2": {"level3": [1, "two", {"four": 4}]}, "empty": {}},
    "array": [1, "a", True, [2, [3]], {"k": "v"}, Decimal("-1.5"), None, []],
}

PROPERTIES = pika.BasicProperties(
    content_type="application/json",
    content_encoding="gzip",
    headers=HEADERS,
    delivery_mode=2,
    priority=7,
    correlation_id="corr-1",
    reply_to="reply.queue",
    expiration="600000",
    message_id="msg-1",
    timestamp=1_700_000_000,
    type="order.created",
    user_id="alice",  # must be the connection's user
    app_id="e2e",
    cluster_id="cluster-x",
)

PROPERTY_NAMES = [
    "content_type",
    "content_encoding",
    "headers",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
]


def assert_same_properties(got: pika.BasicProperties, sent: pika.BasicProperties) -> None:
    for name in PROPERTY_NAMES:
        assert getattr(got, name) == getattr(sent, name), name


def test_every_property_round_trips_with_pika(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    body = bytes(range(256))
    channel.basic_publish("", queue, body, PROPERTIES)
    got = get(channel, queue)
    assert got.body == body
    assert_same_properties(got.properties, PROPERTIES)
    consumer = Consumer(channel, queue, auto_ack=True)  # deliver carries them too
    channel.basic_publish("", queue, b"", PROPERTIES)
    delivered = consumer.wait(1)[0]
    assert delivered.body == b""
    assert_same_properties(delivered.properties, PROPERTIES)


def test_no_properties_stay_none(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", queue, b"bare")
    got = get(channel, queue).properties
    assert all(getattr(got, name) is None for name in PROPERTY_NAMES)


def test_user_id_must_be_the_authenticated_user(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    with channel_closed(PRECONDITION_FAILED):
        channel.basic_publish("", queue, b"forged", pika.BasicProperties(user_id="mallory"))
        channel.queue_declare(queue, passive=True)  # the close comes asynchronously


def test_aio_pika_publish_reaches_pika_intact(
    amqp_broker: BrokerProcess, amqp_clients: PikaClients
) -> None:
    """aio-pika (pamqp) encodes ints and timestamps its own way; pika decodes."""
    channel = amqp_clients.channel()
    queue = channel.queue_declare(unique("from-aio-pika")).method.queue
    headers = {"int": 1, "short": -300, "big": 2**40, "text": "t", "nested": {"a": [1, "b"]}}
    sent_at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)

    async def publish() -> None:
        connection = await aio_pika.connect(url(amqp_broker))
        async with connection:
            aio_channel = await connection.channel()
            message = aio_pika.Message(
                b"from aio-pika",
                headers=headers,
                content_type="text/plain",
                correlation_id="c-2",
                reply_to="r",
                message_id="m-2",
                timestamp=sent_at,
                type="t",
                app_id="aio",
                priority=3,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                expiration=60,  # seconds in aio-pika, milliseconds on the wire
            )
            await aio_channel.default_exchange.publish(message, routing_key=queue)

    run_async(publish())
    got = get(channel, queue)
    channel.queue_delete(queue)
    props = got.properties
    assert got.body == b"from aio-pika"
    assert props.headers == headers
    assert (props.content_type, props.correlation_id, props.reply_to) == ("text/plain", "c-2", "r")
    assert (props.message_id, props.type, props.app_id) == ("m-2", "t", "aio")
    assert (props.priority, props.delivery_mode, props.expiration) == (3, 2, "60000")
    assert props.timestamp == int(sent_at.timestamp())


def test_pika_publish_reaches_aiormq_intact(
    amqp_broker: BrokerProcess, amqp_clients: PikaClients
) -> None:
    channel = amqp_clients.channel()
    queue = channel.queue_declare(unique("to-aiormq")).method.queue
    channel.basic_publish("", queue, b"from pika", PROPERTIES)

    async def fetch() -> aiormq.abc.DeliveredMessage:
        connection = await aiormq.connect(url(amqp_broker))
        try:
            aio_channel = await connection.channel()
            message = await aio_channel.basic_get(queue, no_ack=True)
            await aio_channel.queue_delete(queue)
            return message
        finally:
            await connection.close()

    message = run_async(fetch())
    props = message.header.properties
    assert message.body == b"from pika"
    headers = dict(props.headers)
    assert headers["bytes"] == bytearray(HEADERS["bytes"])  # pamqp decodes x as bytearray
    assert headers["nested"] == HEADERS["nested"]
    assert (headers["decimal"], headers["timestamp"]) == (HEADERS["decimal"], HEADERS["timestamp"])
    assert (props.content_type, props.message_id, props.user_id) == (
        "application/json",
        "msg-1",
        "alice",
    )
    assert (props.priority, props.delivery_mode, props.expiration) == (7, 2, "600000")


# Every field value type tag RabbitMQ reads, encoded by hand.
FIELD_VALUES = {
    "t": b"t\x01",
    "b": b"b" + struct.pack("!b", -5),
    "B": b"B\xfe",
    "s": b"s" + struct.pack("!h", -300),
    "u": b"u" + struct.pack("!H", 65000),
    "I": b"I" + struct.pack("!i", -70000),
    "i": b"i" + struct.pack("!I", 4_000_000_000),
    "l": b"l" + struct.pack("!q", -(2**40)),
    "f": b"f" + struct.pack("!f", 1.5),
    "d": b"d" + struct.pack("!d", 2.25),
    "D": b"D\x02" + struct.pack("!i", 314),
    "S": b"S" + longstr("zażółć"),
    "x": b"x" + longstr(b"\x00\xff"),
    "A": b"A" + longstr(b"I" + struct.pack("!i", 1) + b"S" + longstr("a")),
    "T": b"T" + struct.pack("!Q", 1_700_000_000),
    "F": b"F" + longstr(shortstr("k") + b"V"),
    "V": b"V",
}


def test_every_field_type_round_trips_byte_for_byte(amqp_broker: BrokerProcess) -> None:
    """A header table keeps each value's type tag and width, as RabbitMQ keeps the
    properties it does not change: clients in other languages see the types they sent."""
    assert amqp_broker.amqp_port
    client = RawAmqp(amqp_broker.host, amqp_broker.amqp_port)
    try:
        client.handshake()
        client.open_channel(1)
        queue = unique("field-types")
        client.send(queue_declare(1, queue))
        client.expect(QUEUE_DECLARE_OK)
        properties = longstr(b"".join(shortstr(tag) + value for tag, value in FIELD_VALUES.items()))
        client.send(basic_publish(1, queue))
        client.send(content_header(1, 2, HEADERS_FLAG, properties))
        client.send(body(1, b"hi"))
        client.send(basic_get(1, queue))
        client.expect(BASIC_GET_OK)
        size, flags, got = parse_content_header(client.recv())
        assert (size, flags) == (2, HEADERS_FLAG)
        assert got == properties
    finally:
        client.close()
