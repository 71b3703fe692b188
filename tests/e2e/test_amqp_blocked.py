"""connection.blocked and connection.unblocked around a memory alarm: the broker stops
reading from publishing connections and tells them so, then resumes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from .amqp import Consumer, PikaClients, message_count, wait_for
from .brokers import BrokerProcess

pytestmark = pytest.mark.amqp("blocked")


@pytest.fixture
def memory_alarm(amqp_broker: BrokerProcess) -> Iterator[Callable[[bool], None]]:
    """set(True) raises the broker's memory alarm, set(False) clears it; cleared at
    teardown in any case, since the broker is shared."""
    yield amqp_broker.set_memory_alarm
    amqp_broker.set_memory_alarm(False)


def test_publisher_is_blocked_during_a_memory_alarm(
    amqp_clients: PikaClients, memory_alarm: Callable[[bool], None]
) -> None:
    events: list[str] = []
    publisher = amqp_clients.connection()
    publisher.add_on_connection_blocked_callback(lambda *_: events.append("blocked"))
    publisher.add_on_connection_unblocked_callback(lambda *_: events.append("unblocked"))
    channel = publisher.channel()
    watcher = amqp_clients.connection().channel()  # it never publishes: never blocked
    queue = watcher.queue_declare("", exclusive=True).method.queue

    memory_alarm(True)
    channel.basic_publish("", queue, b"held back")
    wait_for(publisher, lambda: "blocked" in events, "connection.blocked")
    assert message_count(watcher, queue) == 0  # the broker is not reading the publish

    memory_alarm(False)
    wait_for(publisher, lambda: "unblocked" in events, "connection.unblocked")
    assert events == ["blocked", "unblocked"]
    consumer = Consumer(watcher, queue, auto_ack=True)
    assert consumer.wait(1)[0].body == b"held back"
