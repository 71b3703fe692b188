"""Core message properties to and from AMQP 0-9-1 content properties.

The core's properties are AMQP's, so the mapping is nearly one to one: pamqp names
``type`` ``message_type`` and gives timestamps as datetimes, the core keeps epoch seconds.
Publishers repeat the same property block message after message, so decoded blocks are
remembered (and their core properties shared, read-only, by the messages); deliveries
encode a message's block once and keep it in the message's cache for every consumer.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from pamqp import commands

from broker.log import event
from broker.message import EMPTY_PROPERTIES, Message, Properties
from protocols.amqp.codec import decode_properties

log = logging.getLogger("broker.amqp")

#: Decoded property blocks remembered per process (a bounded memo, cleared when full).
MEMO_SIZE = 1024
_DECODED: dict[bytes, Properties] = {}
#: Encoded blocks of property objects other protocols share among a stream's messages
#: (MQTT's, for instance), by identity (the object is kept, so its id stays its own).
_ENCODED: dict[int, tuple[Properties, bytes]] = {}
_CACHE_KEY = "amqp.properties"
_EMPTY_BLOCK = b"\x00\x00"


def properties_from_block(block: bytes) -> Properties:
    """Core properties for a content header's property block."""
    props = _DECODED.get(block)
    if props is not None:
        return props
    props = core_properties(decode_properties(block))
    if len(_DECODED) >= MEMO_SIZE:
        _DECODED.clear()
    _DECODED[bytes(block)] = props
    return props


def core_properties(wire: commands.Basic.Properties) -> Properties:
    if wire.timestamp is not None:
        timestamp: int | None = int(wire.timestamp.timestamp())
    else:
        timestamp = None
    values = {
        "content_type": wire.content_type,
        "content_encoding": wire.content_encoding,
        "headers": wire.headers,
        "delivery_mode": wire.delivery_mode,
        "priority": wire.priority,
        "correlation_id": wire.correlation_id,
        "reply_to": wire.reply_to,
        "expiration": wire.expiration,
        "message_id": wire.message_id,
        "timestamp": timestamp,
        "type": wire.message_type,
        "user_id": wire.user_id,
        "app_id": wire.app_id,
        "cluster_id": wire.cluster_id or None,
    }
    if not any(v is not None for v in values.values()):
        return EMPTY_PROPERTIES
    return Properties(**values)


def wire_properties(props: Properties) -> commands.Basic.Properties:
    timestamp = None
    if props.timestamp is not None:
        timestamp = datetime.datetime.fromtimestamp(props.timestamp, datetime.UTC)
    wire = commands.Basic.Properties(
        content_type=props.content_type,
        content_encoding=props.content_encoding,
        headers=_wire_table(props.headers) if props.headers else None,
        delivery_mode=props.delivery_mode,
        priority=props.priority,
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        expiration=props.expiration,
        message_id=props.message_id,
        timestamp=timestamp,
        message_type=props.type,
        user_id=props.user_id,
        app_id=props.app_id,
    )
    # deprecated, and refused by pamqp's validation, but RabbitMQ passes it on: so do we
    wire.cluster_id = props.cluster_id
    return wire


def _wire_table(table: dict[str, Any]) -> dict[str, Any]:
    """Header values made encodable: bytes (from MQTT, or a long string that was not
    UTF-8) travel as byte arrays, tuples as arrays."""
    return {k: _wire_value(v) for k, v in table.items()}


def _wire_value(value: Any) -> Any:
    if isinstance(value, dict):
        return _wire_table(value)
    if isinstance(value, list | tuple):
        return [_wire_value(v) for v in value]
    if isinstance(value, bytes):
        return bytearray(value)  # a byte array ('x'): the table type for raw bytes
    return value


def keep_block(message: Message, block: bytes) -> None:
    """A message published over AMQP is delivered with its property block as received:
    byte for byte, field types included, and without encoding it again."""
    message.cache = {_CACHE_KEY: bytes(block)}


def properties_block_of(message: Message) -> bytes:
    """The encoded property block for delivering ``message``, encoded once per message."""
    if message.properties is EMPTY_PROPERTIES:
        return _EMPTY_BLOCK
    cache = message.cache
    if cache is None:
        cache = message.cache = {}
    block = cache.get(_CACHE_KEY)
    if block is None:
        props = message.properties
        if props is EMPTY_PROPERTIES:
            block = _EMPTY_BLOCK
        else:
            entry = _ENCODED.get(id(props))
            if entry is not None and entry[0] is props:
                block = entry[1]
            else:
                block = _encode(props)
                if len(_ENCODED) >= MEMO_SIZE:
                    _ENCODED.clear()
                _ENCODED[id(props)] = (props, block)
        cache[_CACHE_KEY] = block
    return block


def _encode(props: Properties) -> bytes:
    try:
        return wire_properties(props).marshal()
    except (TypeError, ValueError) as exc:  # a header value AMQP has no type for
        event(log, logging.WARNING, "amqp headers dropped", error=str(exc))
        props = props.copy()
        props.headers = None
        return wire_properties(props).marshal()
