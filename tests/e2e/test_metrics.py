"""/metrics: the Prometheus text format, read back with prometheus-client's own parser after
real MQTT and AMQP traffic."""

from __future__ import annotations

import http.client

import pika
from prometheus_client.parser import text_string_to_metric_families

from .amqp import PikaClients, unique
from .brokers import BrokerProcess
from .clients import Clients
from .xmpp import XmppClients

TIMEOUT = 10.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(broker: BrokerProcess) -> tuple[str, Samples]:
    """(content type, every sample by name and labels) of one GET /metrics."""
    assert broker.http_port, "no http listener"
    conn = http.client.HTTPConnection(broker.host, broker.http_port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200
        content_type = response.getheader("content-type", "")
        text = response.read().decode()
    finally:
        conn.close()
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return content_type, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}"
    return samples[key]


def test_metrics_count_connections_messages_queues_commits_and_memory(
    broker: BrokerProcess, clients: Clients
) -> None:
    subscriber = clients.paho(broker, "metrics-sub")
    publisher = clients.paho(broker, "metrics-pub")
    assert subscriber.subscribe(("metrics/t", 1)) == [1]
    for n in range(3):
        publisher.publish("metrics/t", f"m{n}", qos=1)
    for _ in range(3):
        subscriber.get()

    amqp = PikaClients(broker)
    try:
        channel = amqp.channel()
        channel.confirm_delivery()
        queue = unique("metrics")
        channel.queue_declare(queue, durable=True)
        persistent = pika.BasicProperties(delivery_mode=2)
        for body in (b"one", b"two"):
            channel.basic_publish("", queue, body, persistent)  # confirmed once stored
        method, _, body = channel.basic_get(queue, auto_ack=False)
        assert body == b"one"

        content_type, samples = scrape(broker)
    finally:
        amqp.close_all()

    assert content_type.startswith("text/plain; version=0.0.4")
    assert value(samples, "broker_connections", protocol="mqtt") == 2
    assert value(samples, "broker_connections", protocol="amqp") == 1
    assert value(samples, "broker_messages_received_total", protocol="mqtt") == 3
    assert value(samples, "broker_messages_delivered_total", protocol="mqtt") == 3
    assert value(samples, "broker_messages_received_total", protocol="amqp") == 2
    assert value(samples, "broker_messages_delivered_total", protocol="amqp") == 1
    assert value(samples, "broker_queue_messages_ready", vhost="/", queue=queue) == 1
    assert value(samples, "broker_queue_messages_unacked", vhost="/", queue=queue) == 1
    assert value(samples, "broker_queue_consumers", vhost="/", queue=queue) == 0
    commits = value(samples, "broker_store_commit_seconds_count")
    assert commits >= 1
    assert value(samples, "broker_store_commit_seconds_bucket", le="+Inf") == commits
    assert value(samples, "broker_store_commit_seconds_sum") > 0
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "broker_alarm", resource="memory") == 0


def test_metrics_count_xmpp_messages(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk")
    bob = xmpp.login("bob@localhost/phone")
    for n in range(2):
        alice.send_message("bob@localhost/phone", f"m{n}")
    assert [bob.next_message()["body"] for _ in range(2)] == ["m0", "m1"]
    _, samples = scrape(xmpp.broker)
    assert value(samples, "broker_messages_received_total", protocol="xmpp") == 2
    assert value(samples, "broker_messages_delivered_total", protocol="xmpp") == 2
    assert value(samples, "broker_connections", protocol="xmpp") == 2
