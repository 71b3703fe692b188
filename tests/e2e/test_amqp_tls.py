"""AMQPS: the AMQP listener over TLS, when a certificate is configured (SPEC, Security)."""

from __future__ import annotations

import ssl

import pika
import pytest

from .amqp import get, unique
from .brokers import ALICE, ON_RABBITMQ, BrokerFactory, Certs

pytestmark = [
    pytest.mark.amqp("connection"),
    pytest.mark.skipif(ON_RABBITMQ, reason="the RabbitMQ launcher sets up no TLS listener"),
]


def test_pika_over_tls_with_a_trusted_ca(broker_factory: BrokerFactory, certs: Certs) -> None:
    broker = broker_factory({"listeners": {"amqps": "127.0.0.1:0"}}, tls=True)
    assert broker.amqps_port
    context = ssl.create_default_context(cafile=str(certs.ca))
    parameters = pika.ConnectionParameters(
        broker.host,
        broker.amqps_port,
        credentials=pika.PlainCredentials(*ALICE),
        ssl_options=pika.SSLOptions(context, server_hostname="localhost"),
        connection_attempts=1,
    )
    connection = pika.BlockingConnection(parameters)
    try:
        channel = connection.channel()
        queue = channel.queue_declare(unique("tls"), exclusive=True).method.queue
        channel.basic_publish("", queue, b"over tls")
        assert get(channel, queue).body == b"over tls"
    finally:
        connection.close()
