"""MQTT publishes enter the routing core through amq.topic (SPEC item 1): a core queue
bound with an AMQP pattern receives them, and a core publish reaches MQTT subscribers."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import trio

from broker.config import load_config
from broker.message import Message, Properties
from broker.queues import Queue
from broker.runtime import Server
from protocols.mqtt import codec

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None, reason="needs Debian's mosquitto-clients"
)


class Collector:
    """A core consumer that records deliveries and signals each one."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.arrived = trio.Event()

    def ready(self) -> bool:
        return True

    def deliver(self, queue: Queue, message: Message, seq: int, redelivered: bool) -> bool:
        self.messages.append(message)
        self.arrived.set()
        return False

    def queue_deleted(self, queue: Queue) -> None:
        pass


@pytest.fixture
async def server(tmp_path: Path, nursery: trio.Nursery) -> Server:
    config = load_config(
        None,
        {
            "listeners": {"mqtt": "127.0.0.1:0", "amqp": False, "xmpp": False, "http": False},
            "mqtt": {"sys_interval": 0},
            "store": {"data_dir": str(tmp_path / "data")},
        },
    )
    return await nursery.start(Server(config).run)


async def test_core_queue_bound_with_amqp_pattern_receives_mqtt_publish(server: Server) -> None:
    vhost = server.broker.vhost()
    queue = vhost.declare_queue("telemetry")
    vhost.bind(queue, "amq.topic", "sensors.#", None)
    collector = Collector()
    queue.add_consumer(collector)
    port = server.addresses["mqtt"][1]
    await trio.run_process(
        ["mosquitto_pub", "-p", str(port), "-t", "sensors/room1/temp", "-m", "21.5", "-q", "1"]
    )
    with trio.fail_after(10):
        await collector.arrived.wait()
    [message] = collector.messages
    assert (message.exchange, message.routing_key, message.body) == (
        "amq.topic",
        "sensors.room1.temp",
        b"21.5",
    )
    assert message.properties.delivery_mode == 2


async def test_core_publish_reaches_mqtt_subscriber(server: Server) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", server.addresses["mqtt"][1])
    decoder = codec.Decoder()

    async def next_packet() -> object:
        packets: list = []
        while not packets:
            data = await stream.receive_some()
            assert data, "connection closed"
            packets = decoder.feed(data)
        return packets[0]

    with trio.fail_after(10):
        await stream.send_all(codec.encode(codec.Connect("MQTT", 4, True, 30, "sub")))
        assert isinstance(await next_packet(), codec.Connack)
        subscribe = codec.Subscribe(1, [("alerts/#", codec.SubscriptionOptions(1))])
        await stream.send_all(codec.encode(subscribe))
        assert isinstance(await next_packet(), codec.Suback)
        vhost = server.broker.vhost()
        vhost.publish(Message("amq.topic", "alerts.disk/full", b"90%", Properties()))
        publish = await next_packet()
    assert isinstance(publish, codec.Publish)
    assert (publish.topic, publish.payload, publish.qos) == ("alerts/disk.full", b"90%", 0)
    await stream.aclose()


async def open_v5_subscriber(server: Server, topic_filter: str) -> tuple:
    """A raw MQTT 5 subscriber: (stream, next_packet)."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.addresses["mqtt"][1])
    decoder = codec.Decoder()
    decoder.protocol_level = 5
    pending: list = []

    async def next_packet() -> object:
        while not pending:
            data = await stream.receive_some()
            assert data, "connection closed"
            pending.extend(decoder.feed(data))
        return pending.pop(0)

    await stream.send_all(codec.encode(codec.Connect("MQTT", 5, True, 30, "sub5"), 5))
    assert isinstance(await next_packet(), codec.Connack)
    subscribe = codec.Subscribe(1, [(topic_filter, codec.SubscriptionOptions(1))])
    await stream.send_all(codec.encode(subscribe, 5))
    assert isinstance(await next_packet(), codec.Suback)
    return stream, next_packet


async def test_mqtt5_properties_reach_mqtt5_subscriber_and_core_consumer(server: Server) -> None:
    vhost = server.broker.vhost()
    queue = vhost.declare_queue("core")
    vhost.bind(queue, "amq.topic", "sensors.#", None)
    collector = Collector()
    queue.add_consumer(collector)
    with trio.fail_after(10):
        stream, next_packet = await open_v5_subscriber(server, "sensors/#")
        define = ["-D", "publish"]
        await trio.run_process(
            ["mosquitto_pub", "-V", "5", "-p", str(server.addresses["mqtt"][1])]
            + ["-t", "sensors/room1/temp", "-m", "21.5", "-q", "1"]
            + [*define, "user-property", "unit", "C", *define, "user-property", "room", "1"]
            + [*define, "content-type", "text/plain", *define, "response-topic", "replies/me"]
            + [*define, "correlation-data", "req-1", *define, "message-expiry-interval", "60"]
            + [*define, "payload-format-indicator", "1"]
        )
        publish = await next_packet()
        await collector.arrived.wait()
    await stream.aclose()
    assert isinstance(publish, codec.Publish)
    assert (publish.topic, publish.payload, publish.qos) == ("sensors/room1/temp", b"21.5", 1)
    props = publish.properties
    assert props["user_property"] == [("unit", "C"), ("room", "1")]
    assert (props["content_type"], props["response_topic"]) == ("text/plain", "replies/me")
    assert (props["correlation_data"], props["payload_format_indicator"]) == (b"req-1", 1)
    assert 0 < props["message_expiry_interval"] <= 60
    [message] = collector.messages
    core = message.properties
    assert (message.routing_key, message.body) == ("sensors.room1.temp", b"21.5")
    assert core.headers == {"unit": "C", "room": "1"}
    assert (core.content_type, core.correlation_id, core.reply_to) == (
        "text/plain",
        "req-1",
        "replies.me",
    )
    assert (core.expiration, core.delivery_mode) == ("60000", 2)


async def test_core_properties_reach_mqtt5_subscriber(server: Server) -> None:
    with trio.fail_after(10):
        stream, next_packet = await open_v5_subscriber(server, "rpc/#")
        properties = Properties(
            content_type="application/json",
            headers={"tenant": "a", "x-correlation-data": b"\x00\xff", "count": 3},
            reply_to="rpc.replies.client1",
            delivery_mode=2,
        )
        message = Message(
            "amq.topic", "rpc.requests", b"{}", properties, expires_at=time.time() + 30
        )
        server.broker.vhost().publish(message)
        publish = await next_packet()
    await stream.aclose()
    assert isinstance(publish, codec.Publish)
    assert (publish.topic, publish.qos) == ("rpc/requests", 1)
    props = publish.properties
    assert props["content_type"] == "application/json"
    assert props["response_topic"] == "rpc/replies/client1"
    assert props["correlation_data"] == b"\x00\xff"
    assert props["user_property"] == [("tenant", "a")]  # string headers only
    assert 0 < props["message_expiry_interval"] <= 30
