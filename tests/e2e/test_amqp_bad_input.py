"""Malformed input on a raw socket closes only that connection, with the protocol's own
error; a well-behaved pika connection opened before it keeps working."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pika.adapters.blocking_connection import BlockingChannel

from .amqp import (
    CHANNEL_ERROR,
    FRAME_ERROR,
    NOT_IMPLEMENTED,
    SYNTAX_ERROR,
    UNEXPECTED_FRAME,
    PikaClients,
    get,
)
from .brokers import ON_RABBITMQ, BrokerProcess
from .rawamqp import (
    PROTOCOL_HEADER,
    RawAmqp,
    basic_publish,
    body,
    channel_open,
    content_header,
    longstr,
    method,
    queue_declare,
    shortstr,
)

pytestmark = pytest.mark.amqp("bad-input")


@pytest.fixture
def bystander(amqp_clients: PikaClients) -> Iterator[BlockingChannel]:
    """A pika channel open during the test; after it, a message must still round-trip."""
    channel = amqp_clients.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    yield channel
    channel.basic_publish("", queue, b"unaffected")
    assert get(channel, queue).body == b"unaffected"


@pytest.fixture
def client(amqp_broker: BrokerProcess, bystander: BlockingChannel) -> Iterator[RawAmqp]:
    assert amqp_broker.amqp_port
    raw = RawAmqp(amqp_broker.host, amqp_broker.amqp_port)
    yield raw
    raw.close()


def expect_close_or_rabbitmq_drop(client: RawAmqp, code: int) -> None:
    """Ours must send connection.close `code` (SPEC). RabbitMQ 3.10's connection process
    crashes on this input instead: it closes the socket without a word."""
    if ON_RABBITMQ:
        assert client.wait_closed() == b""
    else:
        assert client.expect_connection_close().reply_code == code


@pytest.mark.parametrize(
    "header",
    [b"GET / HTTP/1.1\r\n\r\n", b"AMQP\x00\x00\x09\x02", b"AMQP\x01\x01\x00\x0a"],
    ids=["http", "amqp-0-9-2", "amqp-0-10"],
)
def test_bad_protocol_header_gets_ours_and_a_close(client: RawAmqp, header: bytes) -> None:
    client.send(header)
    assert client.wait_closed() == PROTOCOL_HEADER


def test_frame_over_the_default_frame_max_is_501(client: RawAmqp) -> None:
    tune = client.handshake()
    client.open_channel(1)
    # frame_max counts the 8 bytes of framing too, but RabbitMQ accepts a payload of up to
    # frame_max; one more byte is over by any reading
    size = tune.frame_max + 1
    client.send(basic_publish(1, "anywhere"))
    client.send(content_header(1, size))
    client.send(body(1, b"x" * size))
    assert client.expect_connection_close().reply_code == FRAME_ERROR


def test_frame_over_a_negotiated_frame_max_is_501(client: RawAmqp) -> None:
    client.handshake(frame_max=4096)
    client.open_channel(1)
    client.send(basic_publish(1, "anywhere"))
    client.send(content_header(1, 5000))
    client.send(body(1, b"x" * 5000))
    assert client.expect_connection_close().reply_code == FRAME_ERROR


def test_wrong_frame_end_octet_is_501(client: RawAmqp) -> None:
    client.handshake()
    frame = channel_open(1)
    client.send(frame[:-1] + b"\x00")
    assert client.expect_connection_close().reply_code == FRAME_ERROR


def test_method_on_a_channel_that_is_not_open_is_504(client: RawAmqp) -> None:
    client.handshake()
    client.send(queue_declare(5, "never-opened"))
    assert client.expect_connection_close().reply_code == CHANNEL_ERROR


def test_body_without_a_header_is_505(client: RawAmqp) -> None:
    client.handshake()
    client.open_channel(1)
    client.send(body(1, b"orphan"))
    assert client.expect_connection_close().reply_code == UNEXPECTED_FRAME


def test_header_without_a_method_is_505(client: RawAmqp) -> None:
    client.handshake()
    client.open_channel(1)
    client.send(content_header(1, 6))
    assert client.expect_connection_close().reply_code == UNEXPECTED_FRAME


@pytest.mark.parametrize("ids", [(60, 999), (999, 10)], ids=["method", "class"])
def test_unknown_class_or_method_is_540(client: RawAmqp, ids: tuple[int, int]) -> None:
    client.handshake()
    client.open_channel(1)
    client.send(method(1, ids))
    expect_close_or_rabbitmq_drop(client, NOT_IMPLEMENTED)


def test_field_table_with_an_unknown_type_is_502(client: RawAmqp) -> None:
    client.handshake()
    client.open_channel(1)
    bad_table = longstr(shortstr("key") + b"Z" + b"\x00\x00\x00\x00")
    client.send(queue_declare(1, "", arguments=bad_table))
    expect_close_or_rabbitmq_drop(client, SYNTAX_ERROR)
