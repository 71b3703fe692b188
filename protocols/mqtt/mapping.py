"""MQTT <-> core message mapping (SPEC "Where protocols meet", items 1 and 2).

An MQTT publish becomes a core message on ``amq.topic`` whose routing key is the topic with
``/`` and ``.`` swapped; QoS >= 1 means delivery_mode 2.  QoS 2 is remembered in ``extra``
so it survives the trip to another MQTT subscriber.  The MQTT 3.x PUBLISH encoding is cached on
the message so a fan-out encodes once (MQTT 5 encodings: ``mapping5``).
"""

from __future__ import annotations

from broker.message import EMPTY_PROPERTIES, PERSISTENT, Message
from broker.topics import TOPIC_EXCHANGE, key_to_mqtt, mqtt_to_key
from protocols.mqtt.codec import encode_publish

QOS2 = {"qos": 2}
#: Routing keys of recently published topics: publishers repeat their topics.
_KEYS: dict[str, str] = {}
KEY_CACHE_SIZE = 4096
#: Cache keys of QoS 0 encodings for MQTT 3.x, live and retained (3.1 and 3.1.1 agree).
V3_LIVE = (4, False)
V3_RETAINED = (4, True)
#: Cache key of a received 3.x QoS 1 PUBLISH, reused with another packet id.
V3_QOS1 = (4, 1)


def routing_key(topic: str) -> str:
    """The routing key of an MQTT topic, remembered: publishers repeat their topics."""
    key = _KEYS.get(topic)
    if key is None:
        if len(_KEYS) >= KEY_CACHE_SIZE:
            _KEYS.clear()
        key = _KEYS[topic] = mqtt_to_key(topic)
    return key


def message_from_publish(
    topic: str,
    payload: bytes,
    qos: int,
    origin: object,
    publisher: str | None,
    raw: bytes | None = None,
) -> Message:
    """A core message for an MQTT 3.1.1 publish; ``raw`` is the received packet when it can
    be forwarded unchanged to QoS 0 subscribers of the same protocol level."""
    key = routing_key(topic)
    message = Message(
        TOPIC_EXCHANGE,
        key,
        payload,
        PERSISTENT if qos else EMPTY_PROPERTIES,
        None,
        origin,
        publisher,
        QOS2 if qos == 2 else None,
        topic,
    )
    if raw is not None:
        message.cache = {V3_LIVE if qos == 0 else V3_QOS1: raw}
    return message


def messages_from_publishes(
    topic: str,
    payloads: list[bytes],
    raws: list[bytes | None],
    qos: int,
    origin: object,
    publisher: str | None,
) -> list[Message]:
    """Core messages for a run of MQTT 3.1.1 publishes that share topic and QoS (0 or
    1), each with its received packet (if kept) to forward."""
    key = routing_key(topic)
    properties = PERSISTENT if qos else EMPTY_PROPERTIES
    kind = V3_QOS1 if qos else V3_LIVE
    messages = []
    for payload, raw in zip(payloads, raws, strict=True):
        message = Message(
            TOPIC_EXCHANGE, key, payload, properties, None, origin, publisher, None, topic
        )
        if raw is not None:
            message.cache = {kind: raw}
        messages.append(message)
    return messages


def message_qos(message: Message) -> int:
    """QoS a message was published with: MQTT's own, else 1 for persistent AMQP messages."""
    extra = message.extra
    if extra is not None:
        qos = extra.get("qos")
        if qos is not None:
            return qos
    return 1 if message.persistent else 0


def message_topic(message: Message) -> str:
    """The MQTT topic a routed message is delivered under."""
    topic = message.topic
    if topic is None:
        topic = message.topic = key_to_mqtt(message.routing_key)
    return topic


def encode_qos0(message: Message, retain: bool) -> bytes:
    """The MQTT 3.x QoS 0 PUBLISH for a message, encoded once per retain flag (3.1 and
    3.1.1 share one encoding)."""
    key = V3_RETAINED if retain else V3_LIVE
    cache = message.cache
    if cache is None:
        cache = message.cache = {}
    data = cache.get(key)
    if data is None:
        data = cache[key] = encode_publish(
            message_topic(message), message.body, 0, retain, False, None, None, 4
        )
    return data


def qos1_pieces(message: Message, packet_id: int) -> tuple[bytes, bytes, bytes] | None:
    """The MQTT 3.x QoS 1 PUBLISH (no retain, no DUP) of a message received as one, as
    the packet's head, the new packet id and the body (a batch joins them once); None
    for any other message."""
    cache = message.cache
    raw = cache.get(V3_QOS1) if cache is not None else None
    if raw is None:
        return None
    body = message.body
    return raw[: len(raw) - len(body) - 2], packet_id.to_bytes(2, "big"), body


def encode_qos(message: Message, qos: int, packet_id: int, retain: bool, dup: bool) -> bytes:
    """An MQTT 3.x QoS 1/2 PUBLISH: the packet id differs per subscriber, so only a QoS 1
    packet as received is reused, with the packet id swapped."""
    if qos == 1 and not retain and not dup:
        pieces = qos1_pieces(message, packet_id)
        if pieces is not None:
            return b"".join(pieces)
    return encode_publish(
        message_topic(message), message.body, qos, retain, dup, packet_id, None, 4
    )
