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
from typing import Any

from broker.message import Message, Properties
from broker.topics import TOPIC_EXCHANGE, key_to_mqtt, mqtt_to_key
from protocols.mqtt.codec import encode_publish_block
from protocols.mqtt.properties import encode_property_items, encode_varint

#: Cache key of a message's encoded MQTT 5 properties (without expiry, which counts down).
PROPERTIES_KEY = "v5-properties"
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
    properties: dict[str, Any],
    origin: object,
    publisher: str | None,
) -> Message:
    """A core message for an MQTT 5 publish."""
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
    return Message(
        TOPIC_EXCHANGE,
        mqtt_to_key(topic),
        payload,
        Properties(
            content_type=properties.get("content_type"),
            headers=headers or None,
            delivery_mode=2 if qos else None,
            correlation_id=correlation_id,
            reply_to=None if response_topic is None else mqtt_to_key(response_topic),
            expiration=None if expiry is None else str(expiry * 1000),
        ),
        None if expiry is None else time.time() + expiry,
        origin,
        publisher,
        extra or None,
        topic,
    )


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
    before the message's own properties, which are encoded once per message."""
    parts = []
    if alias:
        parts.append(TOPIC_ALIAS_ID + alias.to_bytes(2, "big"))
    if subscription_ids:
        parts.extend(SUBSCRIPTION_ID + encode_varint(i) for i in subscription_ids)
    if message.expires_at is None:
        cache = message.cache
        if cache is None:
            cache = message.cache = {}
        own = cache.get(PROPERTIES_KEY)
        if own is None:
            own = cache[PROPERTIES_KEY] = encode_property_items(publish_properties(message))
    else:
        own = encode_property_items(publish_properties(message))
    parts.append(own)
    items = b"".join(parts)
    props = encode_varint(len(items)) + items
    return encode_publish_block(topic, message.body, qos, retain, dup, packet_id, props)
