"""Clients for the tests: paho-mqtt (MQTT 3.1.1) wrapped in blocking calls that wait on
events, a few helpers built on it, and the pool behind the `clients` fixture."""

from __future__ import annotations

import queue
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from .brokers import BrokerProcess
from .rawmqtt import RawClient, Will

TIMEOUT = 5.0


@dataclass(frozen=True)
class ConnAck:
    reason: ReasonCode
    session_present: bool


class PahoClient:
    """paho in its network thread; callbacks feed events and queues the test waits on.

    Automatic reconnection is off, so a connection the broker closes stays closed.
    """

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str = "",
        *,
        clean_session: bool = True,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        will: Will | None = None,
        transport: str = "tcp",
    ) -> None:
        """``transport="websockets"`` speaks MQTT over WebSocket (path /mqtt)."""
        self.host, self.port = host, port
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=paho.MQTTv311,
            reconnect_on_failure=False,
            transport=transport,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(ca_certs=ca_file)
        if will is not None:
            self.client.will_set(will.topic, will.payload, will.qos, will.retain)
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.disconnected = threading.Event()
        self._connacks: queue.Queue[ConnAck] = queue.Queue()
        self._subacks: dict[int, list[int]] = {}
        self._suback_cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_disconnect = lambda *_args: self.disconnected.set()

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: ReasonCode, _p: Any) -> None:
        self._connacks.put(ConnAck(reason, bool(flags.session_present)))

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: list[ReasonCode], _p: Any) -> None:
        with self._suback_cond:
            self._subacks[mid] = [code.value for code in codes]
            self._suback_cond.notify_all()

    def connect(self, keepalive: int = 60) -> ConnAck:
        """Connect and wait for the CONNACK (which may be a refusal)."""
        self.disconnected.clear()
        self.client.connect(self.host, self.port, keepalive)
        self.client.loop_start()
        return self._connacks.get(timeout=TIMEOUT)

    def subscribe(self, *filters: tuple[str, int]) -> list[int]:
        """Subscribe and return the SUBACK's return codes (0-2, or 0x80 for a failure)."""
        rc, mid = self.client.subscribe(list(filters))
        assert rc == paho.MQTT_ERR_SUCCESS, rc
        with self._suback_cond:
            got = self._suback_cond.wait_for(lambda: mid in self._subacks, TIMEOUT)
            assert got, f"no SUBACK for {filters}"
            return self._subacks.pop(mid)

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False) -> None:
        """Publish and, for QoS 1 and 2, wait until the broker has acknowledged it."""
        info = self.client.publish(topic, payload, qos, retain)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"publish to {topic} not acknowledged"

    def get(self, timeout: float = TIMEOUT) -> paho.MQTTMessage:
        """The next message received; fails the test if none arrives in time."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout}s") from None

    def disconnect(self) -> None:
        """A clean DISCONNECT; waits until the network thread has finished."""
        self.client.disconnect()
        self.client.loop_stop()

    def close(self) -> None:
        if self.client.is_connected():
            self.client.disconnect()
        self.client.loop_stop()


def flush(subscriber: PahoClient, publisher: PahoClient, topic: str, qos: int = 1) -> None:
    """Publish a marker on `topic` and receive it, asserting nothing arrived before it.

    Messages published earlier on the same topic reach the subscriber before the marker,
    so after this returns, anything that should not have been delivered would have been.
    """
    marker = f"marker-{uuid.uuid4().hex}".encode()
    publisher.publish(topic, marker, qos)
    msg = subscriber.get()
    assert msg.payload == marker, f"unexpected message {msg.topic} {msg.payload!r}"


def round_trip(client: PahoClient) -> None:
    """The client subscribes to a fresh topic, publishes to it at QoS 1 and receives it."""
    topic = f"roundtrip/{uuid.uuid4().hex}"
    assert client.subscribe((topic, 1)) == [1]
    client.publish(topic, b"ping", 1)
    msg = client.get()
    assert (msg.topic, msg.payload) == (topic, b"ping")


class Clients:
    """Opens clients against brokers and closes them all at teardown."""

    def __init__(self) -> None:
        self._open: list[PahoClient | RawClient] = []

    def paho_unconnected(
        self, broker: BrokerProcess, client_id: str = "", *, tls: bool = False, **kwargs: Any
    ) -> PahoClient:
        port = broker.mqtts_port if tls else broker.mqtt_port
        assert port, "no such listener"
        client = PahoClient(broker.host, port, client_id, **kwargs)
        self._open.append(client)
        return client

    def paho(self, broker: BrokerProcess, client_id: str = "", **kwargs: Any) -> PahoClient:
        """A paho client, connected (the CONNACK must accept it)."""
        client = self.paho_unconnected(broker, client_id, **kwargs)
        connack = client.connect()
        assert connack.reason == 0, f"connection refused: {connack.reason}"
        return client

    def raw(self, broker: BrokerProcess) -> RawClient:
        """A raw socket to the MQTT listener; nothing sent yet."""
        client = RawClient(broker.host, broker.mqtt_port)
        self._open.append(client)
        return client

    def close_all(self) -> None:
        for client in self._open:
            client.close()
