"""AMQP connections: handshake and login (PLAIN, AMQPLAIN), refusals, tune negotiation,
channels, server properties, heartbeats both ways."""

from __future__ import annotations

import amqp as pyamqp
import pika.exceptions
import pytest

from .amqp import (
    ACCESS_REFUSED,
    NOT_ALLOWED,
    PikaClients,
    get,
    parameters,
    unique,
)
from .brokers import ALICE, NOPERM, BrokerProcess
from .rawamqp import (
    BASIC_CONSUME_OK,
    BASIC_DELIVER,
    BODY,
    HEADER,
    HEARTBEAT,
    QUEUE_DECLARE_OK,
    RawAmqp,
    basic_consume,
    basic_publish,
    body,
    channel_open,
    content_header,
    queue_declare,
)

pytestmark = pytest.mark.amqp("connection")

# What RabbitMQ advertises, and what its clients look for.
CAPABILITIES = {
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "consumer_priorities",
    "authentication_failure_close",
    "per_consumer_qos",
    "direct_reply_to",
}


def py_amqp(
    broker: BrokerProcess, user: tuple[str, str] = ALICE, **kwargs: object
) -> pyamqp.Connection:
    """py-amqp (kombu's and celery's client), not yet connected."""
    return pyamqp.Connection(
        f"{broker.host}:{broker.amqp_port}", userid=user[0], password=user[1], **kwargs
    )


def raw(broker: BrokerProcess) -> RawAmqp:
    assert broker.amqp_port
    return RawAmqp(broker.host, broker.amqp_port)


def test_server_properties_and_capabilities(amqp_clients: PikaClients) -> None:
    properties = amqp_clients.connection()._impl.server_properties  # pika keeps them there
    assert isinstance(properties["product"], str | bytes) and properties["product"]
    assert isinstance(properties["version"], str | bytes) and properties["version"]
    capabilities = properties["capabilities"]
    assert {name for name, on in capabilities.items() if on} >= CAPABILITIES


def test_plain_login_round_trip(amqp_clients: PikaClients) -> None:
    channel = amqp_clients.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", queue, b"hello")
    assert get(channel, queue).body == b"hello"


def test_amqplain_login_round_trip(amqp_broker: BrokerProcess) -> None:
    connection = py_amqp(amqp_broker, login_method="AMQPLAIN")
    connection.connect()
    try:
        channel = connection.channel()
        queue, _count, _consumers = channel.queue_declare("", exclusive=True)
        channel.basic_publish(pyamqp.Message(b"hello"), "", queue)
        assert channel.basic_get(queue, no_ack=True).body == b"hello"
    finally:
        connection.close()


def test_wrong_password_is_refused_with_403(amqp_broker: BrokerProcess) -> None:
    connection = py_amqp(amqp_broker, (ALICE[0], "wrong"))
    with pytest.raises(pyamqp.exceptions.AccessRefused) as info:
        connection.connect()
    assert info.value.reply_code == ACCESS_REFUSED
    # pika reads the close (authentication_failure_close) as an authentication failure
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(parameters(amqp_broker, (ALICE[0], "wrong")))


def test_vhost_without_permission_is_not_allowed(amqp_broker: BrokerProcess) -> None:
    for user, vhost in [(NOPERM, "/"), (ALICE, unique("no-such-vhost"))]:
        connection = py_amqp(amqp_broker, user, virtual_host=vhost)
        with pytest.raises(pyamqp.exceptions.NotAllowed) as info:
            connection.connect()
        assert info.value.reply_code == NOT_ALLOWED
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        pika.BlockingConnection(parameters(amqp_broker, NOPERM))


def test_frame_max_negotiated_down_splits_deliveries(amqp_broker: BrokerProcess) -> None:
    client = raw(amqp_broker)
    try:
        tune = client.handshake(frame_max=4096)
        assert tune.frame_max == 0 or tune.frame_max >= 4096, tune  # 4096: the spec's minimum
        assert tune.channel_max > 0, tune
        client.open_channel(1)
        queue = unique("frames")
        client.send(queue_declare(1, queue))
        client.expect(QUEUE_DECLARE_OK)
        client.send(basic_consume(1, queue))
        client.expect(BASIC_CONSUME_OK)
        payload = bytes(range(256)) * 40  # 10240 bytes: three body frames at 4096
        client.send(basic_publish(1, queue))
        client.send(content_header(1, len(payload)))
        for i in range(0, len(payload), 4000):
            client.send(body(1, payload[i : i + 4000]))
        client.expect(BASIC_DELIVER)
        assert client.recv().kind == HEADER
        received = b""
        while len(received) < len(payload):
            f = client.recv()
            assert f.kind == BODY, f
            assert len(f.payload) + 8 <= 4096, f"a {len(f.payload) + 8}-byte frame"
            received += f.payload
        assert received == payload
    finally:
        client.close()


def test_channel_max_is_enforced(amqp_broker: BrokerProcess) -> None:
    client = raw(amqp_broker)
    try:
        client.handshake(channel_max=2)
        client.open_channel(1)
        client.open_channel(2)
        client.send(channel_open(3))
        assert client.expect_connection_close().reply_code == NOT_ALLOWED
    finally:
        client.close()


def test_channels_open_and_close_independently(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection()
    first, second = connection.channel(), connection.channel()
    queue = first.queue_declare("", exclusive=True).method.queue
    first.close()
    assert first.is_closed and second.is_open
    second.basic_publish("", queue, b"still here")
    third = connection.channel()
    assert get(third, queue).body == b"still here"


@pytest.mark.amqp("heartbeat")
def test_broker_sends_heartbeats_and_closes_a_silent_client(amqp_broker: BrokerProcess) -> None:
    client = raw(amqp_broker)
    try:
        client.handshake(heartbeat=1)
        assert client.recv(timeout=5).kind == HEARTBEAT
        client.wait_closed(timeout=10)  # we send no heartbeats: the broker must give up
    finally:
        client.close()


@pytest.mark.amqp("heartbeat")
def test_heartbeats_keep_an_idle_connection_alive(amqp_clients: PikaClients) -> None:
    connection = amqp_clients.connection(heartbeat=1)
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    # Idle for several heartbeat intervals: pika closes a connection that sends it nothing,
    # the broker one whose heartbeats it does not accept.
    connection.sleep(3.5)
    assert connection.is_open
    channel.basic_publish("", queue, b"alive")
    assert get(channel, queue).body == b"alive"
