"""MQTT 5 helpers for the e2e tests: the feature gate, a raw MQTT 5 packet codec, a raw
socket client on it, and paho-mqtt in MQTTv5 wrapped in blocking calls.

The raw codec is hand-written and independent of the broker's own on purpose; it can send
what no client library will (duplicate or unknown properties, alias 0, ...).

A test marked `@pytest.mark.mqtt5("name")` shows MQTT 5 feature "name" (one of FEATURES);
it runs against our broker and Mosquitto alike.
"""

from __future__ import annotations

import queue
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from .brokers import (
    DEFAULT_CONFIG,
    ON_MOSQUITTO,
    BrokerProcess,
    Mosquitto,
    merge,
)
from .clients import Clients
from .rawmqtt import (
    CONNACK,
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PINGRESP,
    PUBLISH,
    SUBACK,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
    Packet,
    RawClient,
    encode_length,
    packet,
    string,
)

FEATURES = frozenset(
    {
        "connect",
        "reason-codes",
        "session-expiry",
        "will-delay",
        "message-expiry",
        "topic-alias-in",
        "topic-alias-out",
        "receive-maximum",
        "maximum-packet-size",
        "no-local",
        "retain-as-published",
        "retain-handling",
        "subscription-identifiers",
        "shared-subscriptions",
        "properties",
        "request-response",
        "enhanced-auth",
        "server-disconnect",
        "bad-properties",
        "core-mapping",
    }
)


TIMEOUT = 5.0
AUTH = 15  # the MQTT 5 packet type

# -- properties ---------------------------------------------------------------------------

BYTE, U16, U32, VARINT, STR, BIN, PAIR = "byte", "u16", "u32", "varint", "str", "bin", "pair"

PROPERTIES: dict[int, tuple[str, str]] = {
    0x01: ("payload_format_indicator", BYTE),
    0x02: ("message_expiry_interval", U32),
    0x03: ("content_type", STR),
    0x08: ("response_topic", STR),
    0x09: ("correlation_data", BIN),
    0x0B: ("subscription_identifier", VARINT),
    0x11: ("session_expiry_interval", U32),
    0x12: ("assigned_client_identifier", STR),
    0x13: ("server_keep_alive", U16),
    0x15: ("authentication_method", STR),
    0x16: ("authentication_data", BIN),
    0x17: ("request_problem_information", BYTE),
    0x18: ("will_delay_interval", U32),
    0x19: ("request_response_information", BYTE),
    0x1A: ("response_information", STR),
    0x1C: ("server_reference", STR),
    0x1F: ("reason_string", STR),
    0x21: ("receive_maximum", U16),
    0x22: ("topic_alias_maximum", U16),
    0x23: ("topic_alias", U16),
    0x24: ("maximum_qos", BYTE),
    0x25: ("retain_available", BYTE),
    0x26: ("user_property", PAIR),
    0x27: ("maximum_packet_size", U32),
    0x28: ("wildcard_subscription_available", BYTE),
    0x29: ("subscription_identifier_available", BYTE),
    0x2A: ("shared_subscription_available", BYTE),
}
PROPERTY_ID = {name: pid for pid, (name, _kind) in PROPERTIES.items()}
MULTIPLE = {"user_property", "subscription_identifier"}  # may repeat; decoded as lists

# Reason codes the tests look for.
SUCCESS = 0x00
NO_MATCHING_SUBSCRIBERS = 0x10
NO_SUBSCRIPTION_EXISTED = 0x11
CONTINUE_AUTHENTICATION = 0x18
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
NOT_AUTHORIZED = 0x87
BAD_AUTHENTICATION_METHOD = 0x8C
KEEP_ALIVE_TIMEOUT = 0x8D
SERVER_SHUTTING_DOWN = 0x8B
SESSION_TAKEN_OVER = 0x8E
TOPIC_FILTER_INVALID = 0x8F
PACKET_ID_NOT_FOUND = 0x92
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
PAYLOAD_FORMAT_INVALID = 0x99
SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1


def varint(n: int) -> bytes:
    return encode_length(n)


def encode_property(name_or_id: str | int, value: Any) -> bytes:
    pid = PROPERTY_ID[name_or_id] if isinstance(name_or_id, str) else name_or_id
    kind = PROPERTIES[pid][1]
    head = varint(pid)
    if kind == BYTE:
        return head + bytes([value])
    if kind == U16:
        return head + struct.pack("!H", value)
    if kind == U32:
        return head + struct.pack("!I", value)
    if kind == VARINT:
        return head + varint(value)
    if kind in (STR, BIN):
        return head + string(value)
    key, val = value
    return head + string(key) + string(val)


Props = dict[str, Any] | list[tuple[str | int, Any]] | bytes | None


def encode_properties(props: Props) -> bytes:
    """Properties with their length. A dict (lists for repeatable ones), a list of
    (name or id, value) pairs sent in that order (duplicates allowed), or raw bytes."""
    if props is None:
        return b"\x00"
    if isinstance(props, bytes):
        return varint(len(props)) + props
    items = props.items() if isinstance(props, dict) else props
    body = b""
    for name, value in items:
        if isinstance(props, dict) and name in MULTIPLE and isinstance(value, list):
            body += b"".join(encode_property(name, v) for v in value)
        else:
            body += encode_property(name, value)
    return varint(len(body)) + body


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def decode_properties(data: bytes, pos: int) -> tuple[dict[str, Any], int]:
    """(properties, position after them); repeatable properties come back as lists."""
    length, pos = decode_varint(data, pos)
    end = pos + length
    out: dict[str, Any] = {}
    while pos < end:
        pid, pos = decode_varint(data, pos)
        name, kind = PROPERTIES[pid]
        if kind == BYTE:
            value, pos = data[pos], pos + 1
        elif kind == U16:
            value, pos = struct.unpack_from("!H", data, pos)[0], pos + 2
        elif kind == U32:
            value, pos = struct.unpack_from("!I", data, pos)[0], pos + 4
        elif kind == VARINT:
            value, pos = decode_varint(data, pos)
        else:
            n = struct.unpack_from("!H", data, pos)[0]
            raw, pos = data[pos + 2 : pos + 2 + n], pos + 2 + n
            if kind == PAIR:
                m = struct.unpack_from("!H", data, pos)[0]
                value = (raw.decode(), data[pos + 2 : pos + 2 + m].decode())
                pos += 2 + m
            else:
                value = raw.decode() if kind == STR else raw
        if name in MULTIPLE:
            out.setdefault(name, []).append(value)
        else:
            assert name not in out, f"the broker sent {name} twice"
            out[name] = value
    assert pos == end, "property length mismatch"
    return out, end


# -- packets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Will5:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    props: Props = None


def connect5(
    client_id: str,
    *,
    clean: bool = True,
    keepalive: int = 60,
    props: Props = None,
    will: Will5 | None = None,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    flags = 0x02 if clean else 0
    payload = string(client_id)
    if will is not None:
        flags |= 0x04 | will.qos << 3 | (0x20 if will.retain else 0)
        payload += encode_properties(will.props) + string(will.topic) + string(will.payload)
    if username is not None:
        flags |= 0x80
        payload += string(username)
    if password is not None:
        flags |= 0x40
        payload += string(password)
    header = string("MQTT") + bytes([5, flags]) + struct.pack("!H", keepalive)
    return packet(CONNECT, 0, header + encode_properties(props) + payload)


def publish5(
    topic: str | bytes,
    payload: bytes,
    *,
    qos: int = 0,
    packet_id: int = 0,
    retain: bool = False,
    dup: bool = False,
    props: Props = None,
) -> bytes:
    flags = (0x08 if dup else 0) | qos << 1 | (0x01 if retain else 0)
    body = string(topic) + (struct.pack("!H", packet_id) if qos else b"")
    return packet(PUBLISH, flags, body + encode_properties(props) + payload)


def sub_options(
    qos: int = 1, *, no_local: bool = False, rap: bool = False, retain_handling: int = 0
) -> int:
    return qos | (0x04 if no_local else 0) | (0x08 if rap else 0) | retain_handling << 4


def subscribe5(packet_id: int, filters: list[tuple[str, int]], *, props: Props = None) -> bytes:
    """`filters` pairs a topic filter with its options byte (see sub_options)."""
    body = struct.pack("!H", packet_id) + encode_properties(props)
    body += b"".join(string(f) + bytes([options]) for f, options in filters)
    return packet(SUBSCRIBE, 0x02, body)


def unsubscribe5(packet_id: int, filters: list[str]) -> bytes:
    body = struct.pack("!H", packet_id) + b"\x00" + b"".join(string(f) for f in filters)
    return packet(UNSUBSCRIBE, 0x02, body)


def ack5(ptype: int, packet_id: int, reason: int = 0, props: Props = None) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP with a reason code (and properties if given)."""
    body = struct.pack("!H", packet_id) + bytes([reason])
    if props is not None:
        body += encode_properties(props)
    return packet(ptype, 0x02 if ptype == 6 else 0, body)


def disconnect5(reason: int = 0, props: Props = None) -> bytes:
    return packet(DISCONNECT, 0, bytes([reason]) + encode_properties(props))


def auth5(reason: int, props: Props = None) -> bytes:
    return packet(AUTH, 0, bytes([reason]) + encode_properties(props))


@dataclass(frozen=True)
class ConnAck5:
    session_present: bool
    reason: int
    props: dict[str, Any]


@dataclass(frozen=True)
class Publish5:
    topic: str
    payload: bytes
    qos: int
    dup: bool
    retain: bool
    packet_id: int
    props: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reason:
    """The reason code (and properties) of an ack, DISCONNECT or AUTH."""

    reason: int
    props: dict[str, Any]
    packet_id: int = 0


def parse_connack5(p: Packet) -> ConnAck5:
    assert p.type == CONNACK, f"expected CONNACK, got packet type {p.type}"
    props, _ = decode_properties(p.body, 2)
    return ConnAck5(bool(p.body[0] & 1), p.body[1], props)


def parse_publish5(p: Packet) -> Publish5:
    assert p.type == PUBLISH, f"expected PUBLISH, got packet type {p.type} ({p.body!r})"
    (tlen,) = struct.unpack_from("!H", p.body)
    topic = p.body[2 : 2 + tlen].decode()
    qos = (p.flags >> 1) & 3
    pos = 2 + tlen
    packet_id = 0
    if qos:
        packet_id = struct.unpack_from("!H", p.body, pos)[0]
        pos += 2
    props, pos = decode_properties(p.body, pos)
    return Publish5(
        topic, p.body[pos:], qos, bool(p.flags & 8), bool(p.flags & 1), packet_id, props
    )


def parse_ack5(p: Packet) -> Reason:
    """PUBACK/PUBREC/PUBREL/PUBCOMP/UNSUBACK-style: packet id, then reason and properties
    (a two-byte body means reason 0 and no properties)."""
    (packet_id,) = struct.unpack_from("!H", p.body)
    if len(p.body) == 2:
        return Reason(0, {}, packet_id)
    props = decode_properties(p.body, 3)[0] if len(p.body) > 3 else {}
    return Reason(p.body[2], props, packet_id)


def parse_reason(p: Packet) -> Reason:
    """DISCONNECT or AUTH: reason and properties (an empty body means reason 0)."""
    if not p.body:
        return Reason(0, {})
    props = decode_properties(p.body, 1)[0] if len(p.body) > 1 else {}
    return Reason(p.body[0], props)


class RawClient5(RawClient):
    """RawClient speaking MQTT 5."""

    def connect5(self, client_id: str, **kwargs: Any) -> ConnAck5:
        self.send(connect5(client_id, **kwargs))
        return parse_connack5(self.expect(CONNACK))

    def subscribe5(
        self, filters: list[tuple[str, int]], packet_id: int = 1, props: Props = None
    ) -> list[int]:
        """Subscribe (filter, options byte) and return the SUBACK's reason codes."""
        self.send(subscribe5(packet_id, filters, props=props))
        p = self.expect(SUBACK)
        (pid,) = struct.unpack_from("!H", p.body)
        assert pid == packet_id
        _props, pos = decode_properties(p.body, 2)
        return list(p.body[pos:])

    def unsubscribe5(self, filters: list[str], packet_id: int = 1) -> list[int]:
        self.send(unsubscribe5(packet_id, filters))
        p = self.expect(UNSUBACK)
        _props, pos = decode_properties(p.body, 2)
        return list(p.body[pos:])

    def get(self, timeout: float = TIMEOUT) -> Publish5:
        return parse_publish5(self.expect(PUBLISH, timeout))

    def publishes_before_pong(self, timeout: float = TIMEOUT) -> list[Publish5]:
        """PINGREQ, then the QoS 1/2 PUBLISH packets that arrive before the PINGRESP: what
        the broker had sent by the time it handled the ping (QoS 0 ones are ignored)."""
        self.send(packet(PINGREQ, 0, b""))
        seen = []
        while (p := self.recv(timeout)).type != PINGRESP:
            if p.type == PUBLISH and p.flags & 0x06:
                seen.append(parse_publish5(p))
        return seen

    def expect_disconnect(self, timeout: float = TIMEOUT) -> Reason:
        """Read until the broker closes; the last packet before must be a DISCONNECT."""
        seen = self.wait_closed(timeout)
        assert seen and seen[-1].type == DISCONNECT, f"closed without DISCONNECT: {seen}"
        return parse_reason(seen[-1])


def aio5(broker: BrokerProcess, identifier: str) -> aiomqtt.Client:
    """An aiomqtt client speaking MQTT 5 (use it with ``async with``)."""
    return aiomqtt.Client(
        broker.host,
        broker.mqtt_port,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=TIMEOUT,
    )


def raw5(clients: Clients, broker: BrokerProcess) -> RawClient5:
    client = RawClient5(broker.host, broker.mqtt_port)
    clients._open.append(client)  # closed with the pool at teardown
    return client


# -- paho-mqtt, MQTTv5 --------------------------------------------------------------------


def properties(kind: int, **values: Any) -> Properties:
    """paho Properties from paho attribute names, e.g. MessageExpiryInterval=1."""
    props = Properties(kind)
    for name, value in values.items():
        setattr(props, name, value)
    return props


@dataclass(frozen=True)
class PahoConnAck:
    reason: int
    session_present: bool
    props: Properties | None


class Paho5:
    """paho-mqtt with protocol MQTTv5 in its network thread; callbacks feed queues.

    Automatic reconnection is off, so a connection the broker closes stays closed.
    """

    def __init__(self, host: str, port: int, client_id: str = "", **connect: Any) -> None:
        self.host, self.port = host, port
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
            reconnect_on_failure=False,
        )
        self.connect_args = connect
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.disconnected = threading.Event()
        self.disconnect_reason: int | None = None
        self._connacks: queue.Queue[PahoConnAck] = queue.Queue()
        self._subacks: dict[int, list[int]] = {}
        self._cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connacks.put(PahoConnAck(reason.value, bool(flags.session_present), props))

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: list[Any], _p: Any) -> None:
        with self._cond:
            self._subacks[mid] = [code.value for code in codes]
            self._cond.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        self.disconnect_reason = reason.value
        self.disconnected.set()

    def connect(
        self,
        keepalive: int = 60,
        *,
        clean_start: bool = True,
        will: Will5 | None = None,
        **props: Any,
    ) -> PahoConnAck:
        """Connect with CONNECT properties given by paho name (SessionExpiryInterval=...)
        and wait for the CONNACK."""
        self.disconnected.clear()
        if will is not None:
            will_props = properties(PacketTypes.WILLMESSAGE, **(will.props or {}))
            self.client.will_set(will.topic, will.payload, will.qos, will.retain, will_props)
        connect_props = properties(PacketTypes.CONNECT, **props) if props else None
        self.client.connect(
            self.host, self.port, keepalive, clean_start=clean_start, properties=connect_props
        )
        self.client.loop_start()
        return self._connacks.get(timeout=TIMEOUT)

    def subscribe(
        self,
        topic: str,
        qos: int = 1,
        *,
        no_local: bool = False,
        rap: bool = False,
        retain_handling: int = 0,
        sub_id: int | None = None,
    ) -> list[int]:
        """Subscribe and return the SUBACK's reason codes."""
        options = SubscribeOptions(
            qos=qos, noLocal=no_local, retainAsPublished=rap, retainHandling=retain_handling
        )
        props = (
            properties(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=sub_id)
            if sub_id is not None
            else None
        )
        rc, mid = self.client.subscribe(topic, options=options, properties=props)
        assert rc == paho.MQTT_ERR_SUCCESS, rc
        with self._cond:
            assert self._cond.wait_for(lambda: mid in self._subacks, TIMEOUT), "no SUBACK"
            return self._subacks.pop(mid)

    def publish(
        self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False, **props: Any
    ) -> None:
        """Publish (PUBLISH properties by paho name) and, for QoS 1 and 2, wait for the ack."""
        publish_props = properties(PacketTypes.PUBLISH, **props) if props else None
        info = self.client.publish(topic, payload, qos, retain, properties=publish_props)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"publish to {topic} not acknowledged"

    def get(self, timeout: float = TIMEOUT) -> paho.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout}s") from None

    def disconnect(self, reason: int = 0, **props: Any) -> None:
        """DISCONNECT (with a reason code and properties) and stop the network thread."""
        code = ReasonCode(PacketTypes.DISCONNECT, identifier=reason)
        disconnect_props = properties(PacketTypes.DISCONNECT, **props) if props else None
        self.client.disconnect(code, disconnect_props)
        self.client.loop_stop()

    def close(self) -> None:
        if self.client.is_connected():
            self.client.disconnect()
        self.client.loop_stop()


def paho5_unconnected(clients: Clients, broker: BrokerProcess, client_id: str = "") -> Paho5:
    client = Paho5(broker.host, broker.mqtt_port, client_id)
    clients._open.append(client)  # closed with the pool at teardown
    return client


def paho5(clients: Clients, broker: BrokerProcess, client_id: str = "", **connect: Any) -> Paho5:
    """A paho MQTTv5 client, connected (the CONNACK must accept it)."""
    client = paho5_unconnected(clients, broker, client_id)
    connack = client.connect(**connect)
    assert connack.reason == 0, f"connection refused: {connack.reason:#x}"
    return client


def flush5(subscriber: Paho5 | RawClient5, publisher: Paho5, topic: str, qos: int = 1) -> None:
    """Publish a marker on `topic` and receive it next, asserting nothing arrived before it
    (messages routed earlier to the same subscriber on that topic come first)."""
    marker = f"marker-{uuid.uuid4().hex}".encode()
    publisher.publish(topic, marker, qos)
    msg = subscriber.get()
    if isinstance(msg, Publish5) and msg.qos:
        subscriber.send(ack5(4 if msg.qos == 1 else 5, msg.packet_id))
    assert msg.payload == marker, f"unexpected message {msg.topic} {msg.payload!r}"


def round_trip5(client: Paho5) -> None:
    topic = f"roundtrip/{uuid.uuid4().hex}"
    assert client.subscribe(topic, 1) == [1]
    client.publish(topic, b"ping", 1)
    msg = client.get()
    assert (msg.topic, msg.payload) == (topic, b"ping")


def wait_out(seconds: float) -> None:
    """Let an expiry interval pass: the behaviour under test is what happens once it has,
    so this is the one wait on the clock (never used to synchronize with the broker)."""
    time.sleep(seconds)


# -- brokers with MQTT 5 settings ---------------------------------------------------------


class Mosquitto5(Mosquitto):
    """Mosquitto with the MQTT 5 settings the tests configure translated too."""

    def _conf(self) -> str:
        conf = super()._conf()
        mqtt = self.config["mqtt"]
        extra = []
        if "max_keepalive" in mqtt:
            extra.append(f"max_keepalive {mqtt['max_keepalive']}")
        listener = conf.index("listener ")
        return conf[:listener] + "".join(line + "\n" for line in extra) + conf[listener:]


def start_broker(request: pytest.FixtureRequest, overrides: dict[str, Any]) -> BrokerProcess:
    """A broker with `overrides` merged into the default configuration, stopped at teardown
    like the `broker_factory` fixture's (Mosquitto also gets the MQTT 5 settings)."""
    factory = request.getfixturevalue("broker_factory")
    if not ON_MOSQUITTO:
        return factory(overrides)
    from .conftest import BROKERS_KEY

    started = request.node.stash[BROKERS_KEY]
    workdir = request.getfixturevalue("tmp_path") / f"broker{len(started)}"
    broker = Mosquitto5(workdir, merge(DEFAULT_CONFIG, overrides))
    started.append(broker)
    broker.start()
    return broker
