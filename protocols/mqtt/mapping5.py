"""MQTT 5 properties <-> core message properties (SPEC "Where protocols meet", item 2).

Inbound, an MQTT 5 PUBLISH's properties become AMQP-style properties so that every protocol
sees them: user properties -> headers, content type -> content_type, correlation data ->
correlation_id (or header ``x-correlation-data`` when it is not a short ASCII string),
response topic ``a/b`` -> reply_to ``a.b``, message expiry (seconds) -> expiration
(milliseconds, as a string) and an absolute expiry time that keeps counting down while the
message waits.  The original user property list (order and duplicates) and the payload
format indicator are kept in ``extra`` so an MQTT 5 subscriber receives them unchanged.

Outbound, the same mapping runs backwards for MQTT 5 subscribers; MQTT 3.1.1 subscribers
get the payload only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from broker.message import Message, Properties
from broker.topics import TOPIC_EXCHANGE, key_to_mqtt, mqtt_to_key
from protocols.mqtt.codec import encode_publish_block
from protocols.mqtt.mapping import routing_key
from protocols.mqtt.properties import encode_property_items, encode_varint, read_varint

#: Entries of the memos below: property mappings seen recently, and their encodings.
MEMO_SIZE = 1024
_MAPPED: dict[tuple[int, int], tuple[Mapping, tuple]] = {}
_ENCODED: dict[tuple[int, int], tuple[Properties, dict | None, bytes]] = {}
_TEMPLATES: dict[tuple, tuple[Properties, dict | None, tuple[bytes, bytes]]] = {}
EMPTY_TOPIC = b"\x00\x00"
#: Property identifiers the broker adds per subscriber.
TOPIC_ALIAS_ID = b"\x23"
SUBSCRIPTION_ID = b"\x0b"
#: Longest correlation data carried as correlation_id (AMQP's shortstr is 255 bytes).
SHORT_STRING = 255
CORRELATION_HEADER = "x-correlation-data"


def message_from_publish5(
    topic: str,
    payload: bytes,
    qos: int,
    properties: Mapping[str, Any],
    origin: object,
    publisher: str | None,
) -> Message:
    """A core message for an MQTT 5 publish."""
    core, extra, expiry = _core_properties(properties, qos)
    return Message(
        TOPIC_EXCHANGE,
        mqtt_to_key(topic),
        payload,
        core,
        None if expiry is None else time.time() + expiry,
        origin,
        publisher,
        extra,
        topic,
    )


def messages_from_publish5(
    topic: str,
    payloads: list[bytes],
    qos: int,
    properties: Mapping[str, Any],
    origin: object,
    publisher: str | None,
) -> list[Message]:
    """Core messages for a run of MQTT 5 publishes that share topic, QoS and properties."""
    core, extra, expiry = _core_properties(properties, qos)
    expires_at = None if expiry is None else time.time() + expiry
    key = routing_key(topic)
    return [
        Message(TOPIC_EXCHANGE, key, payload, core, expires_at, origin, publisher, extra, topic)
        for payload in payloads
    ]


def share_key(template: tuple[bytes, bytes], topic: str) -> tuple:
    """The key under which a message's cache keeps its encoding with ``template``.  Two
    subscribers with equal templates get the same bytes; but an alias means a topic only
    per connection, so an aliased template is shared only for the same topic."""
    return (template, topic) if template[0] == EMPTY_TOPIC else template


def inbound_template(raw: bytes) -> tuple[bytes, bytes]:
    """A received MQTT 5 QoS 0 PUBLISH's (topic with its length, property block with its
    length): the ``publish_template`` a subscriber must have for the packet itself to be
    what it is sent."""
    _, pos = read_varint(raw, 1, len(raw))
    topic_end = pos + 2 + (raw[pos] << 8 | raw[pos + 1])
    length, props_start = read_varint(raw, topic_end, len(raw))
    return raw[pos:topic_end], raw[topic_end : props_start + length]


def _core_properties(
    properties: Mapping[str, Any], qos: int
) -> tuple[Properties, dict | None, int | None]:
    """The core properties, ``extra`` and expiry interval for an MQTT 5 publish's
    properties.  The decoder shares one read-only mapping among the packets that repeat a
    property block, so the result is remembered per mapping and shared by their messages."""
    shared = type(properties) is MappingProxyType
    if shared:
        entry = _MAPPED.get((id(properties), qos))
        if entry is not None and entry[0] is properties:
            return entry[1]
    headers: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if qos == 2:
        extra["qos"] = 2
    users = properties.get("user_property")
    if users:
        headers.update(users)
        extra["user_property"] = list(users)
    if "payload_format_indicator" in properties:
        extra["payload_format_indicator"] = properties["payload_format_indicator"]
    correlation_id = None
    data = properties.get("correlation_data")
    if data is not None:
        if len(data) <= SHORT_STRING and data.isascii() and data.decode().isprintable():
            correlation_id = data.decode()
        else:
            headers[CORRELATION_HEADER] = data
    response_topic = properties.get("response_topic")
    expiry = properties.get("message_expiry_interval")
    core = Properties(
        content_type=properties.get("content_type"),
        headers=headers or None,
        delivery_mode=2 if qos else None,
        correlation_id=correlation_id,
        reply_to=None if response_topic is None else mqtt_to_key(response_topic),
        expiration=None if expiry is None else str(expiry * 1000),
    )
    result = (core, extra or None, expiry)
    if shared:
        if len(_MAPPED) >= MEMO_SIZE:
            _MAPPED.clear()
        _MAPPED[id(properties), qos] = (properties, result)
    return result


def publish_properties(message: Message) -> dict[str, Any]:
    """The MQTT 5 PUBLISH properties for delivering a core message (any origin)."""
    out: dict[str, Any] = {}
    props = message.properties
    extra = message.extra or {}
    if "payload_format_indicator" in extra:
        out["payload_format_indicator"] = extra["payload_format_indicator"]
    if message.expires_at is not None:
        out["message_expiry_interval"] = max(1, math.ceil(message.expires_at - time.time()))
    if props.content_type is not None:
        out["content_type"] = props.content_type
    if props.reply_to is not None:
        out["response_topic"] = key_to_mqtt(props.reply_to)
    headers = props.headers or {}
    if props.correlation_id is not None:
        out["correlation_data"] = props.correlation_id.encode()
    elif isinstance(headers.get(CORRELATION_HEADER), bytes):
        out["correlation_data"] = headers[CORRELATION_HEADER]
    users = extra.get("user_property")
    if users is None:
        users = [(k, v) for k, v in headers.items() if isinstance(v, str)]
    if users:
        out["user_property"] = [tuple(pair) for pair in users]
    return out


def encode_publish5(
    message: Message,
    qos: int,
    packet_id: int | None,
    retain: bool,
    dup: bool,
    topic: str,
    alias: int = 0,
    subscription_ids: list[int] | None = None,
) -> bytes:
    """An MQTT 5 PUBLISH of a core message for one subscriber: its topic alias (with
    ``topic`` empty once the alias is known to the client) and subscription identifiers
    before the message's own properties, which are encoded once per message stream."""
    if message.expires_at is not None or subscription_ids:
        parts = []
        if alias:
            parts.append(TOPIC_ALIAS_ID + alias.to_bytes(2, "big"))
        if subscription_ids:
            parts.extend(SUBSCRIPTION_ID + encode_varint(i) for i in subscription_ids)
        if message.expires_at is None:
            parts.append(_encoded_properties(message))
        else:
            parts.append(encode_property_items(publish_properties(message)))
        items = b"".join(parts)
        props = encode_varint(len(items)) + items
        return encode_publish_block(topic, message.body, qos, retain, dup, packet_id, props)
    return build_publish(
        publish_template(message, topic, alias), message.body, qos, packet_id, retain, dup
    )


def build_publish(
    template: tuple[bytes, bytes],
    body: bytes,
    qos: int,
    packet_id: int | None,
    retain: bool,
    dup: bool,
) -> bytes:
    """A PUBLISH from a ``publish_template`` and the message body."""
    return b"".join(publish_pieces(template, body, qos, packet_id, retain, dup))


def publish_pieces(
    template: tuple[bytes, bytes],
    body: bytes,
    qos: int,
    packet_id: int | None,
    retain: bool,
    dup: bool,
) -> tuple[bytes, ...]:
    """``build_publish``'s packet as the pieces to join (a batch of them joins once)."""
    head, tail = template
    length = len(head) + len(tail) + len(body) + (2 if qos else 0)
    b0 = 0x30 | qos << 1 | (1 if retain else 0) | (8 if dup else 0)
    fixed = bytes((b0, length)) if length < 128 else bytes((b0,)) + encode_varint(length)
    if qos:
        return fixed, head, packet_id.to_bytes(2, "big"), tail, body
    return fixed, head, tail, body


def build_publishes(template: tuple[bytes, bytes], bodies: list[bytes]) -> bytes:
    """QoS 0 PUBLISH packets from one ``publish_template``, one per body, joined: bodies of
    one size (a telemetry stream's) share their packet head, so the run is one join."""
    head, tail = template
    size = len(bodies[0])
    if list(map(len, bodies)).count(size) != len(bodies):
        return b"".join([build_publish(template, body, 0, None, False, False) for body in bodies])
    length = len(head) + len(tail) + size
    fixed = bytes((0x30, length)) if length < 128 else b"\x30" + encode_varint(length)
    prefix = b"".join((fixed, head, tail))
    return prefix + prefix.join(bodies)


def publish_template(message: Message, topic: str, alias: int) -> tuple[bytes, bytes]:
    """The parts of a PUBLISH around the packet id, for messages of one stream (the same
    properties and extra) under one topic and alias: (topic with its length, property
    block).  For messages without an expiry, which counts down."""
    props, extra = message.properties, message.extra
    key = (id(props), id(extra), topic, alias)
    entry = _TEMPLATES.get(key)
    if entry is not None and entry[0] is props and entry[1] is extra:
        return entry[2]
    items = _encoded_properties(message)
    if alias:
        items = TOPIC_ALIAS_ID + alias.to_bytes(2, "big") + items
    raw_topic = topic.encode()
    parts = (len(raw_topic).to_bytes(2, "big") + raw_topic, encode_varint(len(items)) + items)
    if len(_TEMPLATES) >= MEMO_SIZE:
        _TEMPLATES.clear()
    _TEMPLATES[key] = (props, extra, parts)
    return parts


def _encoded_properties(message: Message) -> bytes:
    """The encoded MQTT 5 properties of a message without expiry, remembered per
    (properties, extra) pair: the messages of one publisher's stream share both."""
    props, extra = message.properties, message.extra
    key = (id(props), id(extra))
    entry = _ENCODED.get(key)
    if entry is not None and entry[0] is props and entry[1] is extra:
        return entry[2]
    encoded = encode_property_items(publish_properties(message))
    if len(_ENCODED) >= MEMO_SIZE:
        _ENCODED.clear()
    _ENCODED[key] = (props, extra, encoded)
    return encoded
