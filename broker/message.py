"""The protocol-neutral message.

A message is body bytes plus AMQP-style properties (SPEC "The routing core").  The body is
never copied or re-encoded on its way through the core; front ends cache their wire
encoding on the message (``cache``) so a fan-out to many subscribers of one protocol encodes
once, and keep protocol-specific originals in ``extra`` so a message reaches a consumer of
its own protocol exactly as it was sent.
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import time
from typing import Any

import msgpack

PROPERTY_NAMES = (
    "content_type",
    "content_encoding",
    "headers",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
)

_ids = itertools.count(1)


class Properties:
    """AMQP 0-9-1 basic properties; ``None`` means absent."""

    __slots__ = PROPERTY_NAMES

    def __init__(self, **values: Any) -> None:
        for name in PROPERTY_NAMES:
            setattr(self, name, values.pop(name, None))
        if values:
            raise TypeError(f"unknown properties: {', '.join(values)}")

    def to_dict(self) -> dict[str, Any]:
        """The properties that are set."""
        return {n: v for n in PROPERTY_NAMES if (v := getattr(self, n)) is not None}

    def copy(self) -> Properties:
        return Properties(**self.to_dict())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Properties) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Properties({self.to_dict()!r})"


EMPTY_PROPERTIES = Properties()
#: the properties of a persistent message that has no others (shared, never modified)
PERSISTENT = Properties(delivery_mode=2)


class Message:
    """One published message as it travels through exchanges and queues.

    ``topic`` is the routing key in MQTT syntax when the publisher gave one (SPEC: every
    protocol's topic syntax is MQTT's), so deliveries need not convert it back.
    ``expires_at`` is absolute wall-clock time (seconds) so that expiry keeps counting down
    while the message is queued and across restarts.  ``origin`` identifies the publishing
    connection (for MQTT no-local and for not echoing bridged messages back); ``publisher``
    is the authenticated user name.
    """

    __slots__ = (
        "id",
        "exchange",
        "routing_key",
        "topic",
        "body",
        "properties",
        "persistent",
        "expires_at",
        "origin",
        "publisher",
        "extra",
        "cache",
    )

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Properties = EMPTY_PROPERTIES,
        expires_at: float | None = None,
        origin: object = None,
        publisher: str | None = None,
        extra: dict[str, Any] | None = None,
        topic: str | None = None,
    ) -> None:
        self.id = 0
        self.exchange = exchange
        self.routing_key = routing_key
        self.topic = topic
        self.body = body
        self.properties = properties
        self.persistent = properties.delivery_mode == 2
        self.expires_at = expires_at
        self.origin = origin
        self.publisher = publisher
        self.extra = extra
        self.cache: dict[Any, Any] | None = None

    def storage_id(self) -> int:
        """A run-unique id, given on first need: most messages are never stored."""
        if not self.id:
            self.id = next(_ids)
        return self.id

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at

    def remaining_ttl(self, now: float | None = None) -> float | None:
        """Seconds left before expiry, or None for no expiry."""
        if self.expires_at is None:
            return None
        return max(0.0, self.expires_at - (now or time.time()))

    def derive(self, exchange: str, routing_key: str, properties: Properties) -> Message:
        """A new message with the same body and origin (dead-lettering, republishing)."""
        return Message(
            exchange,
            routing_key,
            self.body,
            properties,
            expires_at=None,
            origin=self.origin,
            publisher=self.publisher,
            extra=self.extra,
        )

    def __repr__(self) -> str:
        return f"Message({self.exchange!r}, {self.routing_key!r}, {self.body[:32]!r})"


#: msgpack extension types for header values msgpack has no type for (AMQP field tables
#: carry timestamps and decimals).
_EXT_DATETIME, _EXT_DECIMAL = 1, 2


def _pack_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return msgpack.ExtType(_EXT_DATETIME, str(value.timestamp()).encode())
    if isinstance(value, decimal.Decimal):
        return msgpack.ExtType(_EXT_DECIMAL, str(value).encode())
    raise TypeError(f"cannot store a header value of type {type(value).__name__}")


def _unpack_ext(code: int, data: bytes) -> Any:
    if code == _EXT_DATETIME:
        return datetime.datetime.fromtimestamp(float(data.decode()), datetime.UTC)
    if code == _EXT_DECIMAL:
        return decimal.Decimal(data.decode())
    return msgpack.ExtType(code, data)


def encode_message(message: Message) -> bytes:
    """The stored form of a message: msgpack of its durable fields."""
    props = _stored_properties(message.properties)
    return msgpack.packb(
        (
            message.exchange,
            message.routing_key,
            message.body,
            props,
            message.expires_at,
            message.publisher,
            message.extra,
        ),
        use_bin_type=True,
        default=_pack_default,
    )


#: Property dicts of the property objects a publisher's stream shares, by identity (the
#: object is kept, so its id stays its own); bounded, cleared when full.
_STORED_PROPERTIES: dict[int, tuple[Properties, dict[str, Any]]] = {}
_STORED_PROPERTIES_SIZE = 1024


def _stored_properties(props: Properties) -> dict[str, Any]:
    """``props.to_dict()``, once per shared object: properties are not changed in place
    once a message carries them (dead-lettering and the like work on copies)."""
    entry = _STORED_PROPERTIES.get(id(props))
    if entry is not None and entry[0] is props:
        return entry[1]
    values = props.to_dict()
    if len(_STORED_PROPERTIES) >= _STORED_PROPERTIES_SIZE:
        _STORED_PROPERTIES.clear()
    _STORED_PROPERTIES[id(props)] = (props, values)
    return values


def decode_message(data: bytes) -> Message:
    exchange, routing_key, body, props, expires_at, publisher, extra = msgpack.unpackb(
        data, raw=False, strict_map_key=False, ext_hook=_unpack_ext
    )
    return Message(
        exchange,
        routing_key,
        body,
        Properties(**props) if props else EMPTY_PROPERTIES,
        expires_at=expires_at,
        publisher=publisher,
        extra=extra,
    )
