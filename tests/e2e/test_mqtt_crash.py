"""Durability: graceful restart (SIGTERM) and crash (SIGKILL) with the same data dir."""

from __future__ import annotations

from .brokers import BrokerFactory, BrokerProcess, skip_on_mosquitto
from .clients import Clients, PahoClient
from .rawmqtt import PUBACK, RawClient, publish

TOPIC = "durable/t"
RETAINED_TOPIC = "durable/retained"
TOTAL = 5000
KILL_AFTER_ACKS = 2000
WINDOW = 100


def offline_subscriber(clients: Clients, broker: BrokerProcess) -> None:
    """Leave a persistent session subscribed to TOPIC at QoS 1, with nobody connected."""
    sub = clients.paho(broker, "durable-sub", clean_session=False)
    assert sub.subscribe((TOPIC, 1)) == [1]
    sub.disconnect()


def resume_subscriber(clients: Clients, broker: BrokerProcess) -> PahoClient:
    sub = clients.paho_unconnected(broker, "durable-sub", clean_session=False)
    connack = sub.connect()
    assert (connack.reason, connack.session_present) == (0, True)
    return sub


def assert_retained_value(clients: Clients, broker: BrokerProcess, payload: bytes) -> None:
    client = clients.paho(broker)
    assert client.subscribe((RETAINED_TOPIC, 1)) == [1]
    msg = client.get()
    assert (msg.payload, msg.retain) == (payload, True)


def test_sigterm_stops_gracefully_and_keeps_state(broker: BrokerProcess, clients: Clients) -> None:
    offline_subscriber(clients, broker)
    pub = clients.paho(broker, "pub")
    pub.publish(RETAINED_TOPIC, b"kept", qos=1, retain=True)
    for i in range(10):
        pub.publish(TOPIC, str(i).encode(), qos=1)
    pub.close()

    assert broker.terminate() == 0
    broker.start()

    sub = resume_subscriber(clients, broker)
    assert [int(sub.get().payload) for _ in range(10)] == list(range(10))
    assert_retained_value(clients, broker, b"kept")


def publish_until_killed(raw: RawClient, broker: BrokerProcess) -> set[int]:
    """Publish 1..TOTAL at QoS 1, up to WINDOW unacknowledged at a time, and SIGKILL the
    broker once KILL_AFTER_ACKS are acknowledged. Returns the numbers that got a PUBACK."""
    acked: set[int] = set()
    sent = 0
    while len(acked) < KILL_AFTER_ACKS:
        room = min(WINDOW - (sent - len(acked)), TOTAL - sent)
        numbers = range(sent + 1, sent + 1 + room)
        raw.send(b"".join(publish(TOPIC, str(n).encode(), qos=1, packet_id=n) for n in numbers))
        sent += len(numbers)
        acked.add(raw.expect(PUBACK, timeout=10).packet_id)
    broker.kill()
    return acked


def receive_all(sub: PahoClient, expected: set[int]) -> None:
    """Receive until every expected number has arrived (duplicates and extras allowed)."""
    missing = set(expected)
    while missing:
        try:
            number = int(sub.get(timeout=10).payload)
        except AssertionError:
            raise AssertionError(
                f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:10]}"
            ) from None
        assert 1 <= number <= TOTAL
        missing.discard(number)


@skip_on_mosquitto("persists only at autosave intervals and shutdown, so SIGKILL loses data")
def test_acknowledged_messages_survive_sigkill(
    broker_factory: BrokerFactory, clients: Clients
) -> None:
    broker = broker_factory({"mqtt": {"max_queued": TOTAL}})  # room for every message
    offline_subscriber(clients, broker)
    clients.paho(broker, "pub").publish(RETAINED_TOPIC, b"kept", qos=1, retain=True)
    raw = clients.raw(broker)
    assert raw.connect("crash-pub") == (False, 0)
    acked = publish_until_killed(raw, broker)
    raw.close()

    broker.start()
    receive_all(resume_subscriber(clients, broker), acked)
    assert_retained_value(clients, broker, b"kept")
