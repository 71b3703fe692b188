"""MQTT 5 properties, plus the primitive data types (MQTT spec 1.5) they share with the codec.

Properties travel as a dict keyed by snake_case names. ``user_property`` is a list of
``(name, value)`` tuples and ``subscription_identifier`` a list of ints, because both may
repeat; every other property maps to a single value.
"""

from __future__ import annotations

import struct

MALFORMED = 0x81
PROTOCOL_ERROR = 0x82
TOPIC_ALIAS_INVALID = 0x94

# Packet kinds index the allowed-packets bitmask; they are the MQTT control packet types,
# plus WILL for the will properties inside CONNECT.
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH, WILL = 8, 9, 10, 11, 14, 15, 16

MAX_VARINT = 268_435_455


class MQTTError(Exception):
    """A protocol violation; reason_code is the MQTT 5 reason code to report.

    ``packets`` holds what the Decoder completed in the same feed before the violation.
    """

    def __init__(self, message: str, reason_code: int = MALFORMED) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.packets: list = []


# --- primitive data types -------------------------------------------------------------

_U16 = struct.Struct(">H")
_VARINT_SMALL = [bytes((i,)) for i in range(128)]


def read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a Variable Byte Integer; non-minimal or over-long encodings are malformed."""
    value = 0
    for shift in (0, 7, 14, 21):
        if pos >= end:
            raise MQTTError("truncated variable byte integer")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and shift:
                raise MQTTError("variable byte integer not minimally encoded")
            return value, pos
    raise MQTTError("variable byte integer longer than 4 bytes")


def encode_varint(value: int) -> bytes:
    """Encode a Variable Byte Integer (0 .. 268435455)."""
    if value < 128:
        return _VARINT_SMALL[value]
    if value > MAX_VARINT:
        raise ValueError(f"{value} does not fit a variable byte integer")
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_binary(buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """Read Binary Data: a two-byte length, then that many bytes, all inside the packet."""
    if pos + 2 > end:
        raise MQTTError("truncated length field")
    stop = pos + 2 + (buf[pos] << 8 | buf[pos + 1])
    if stop > end:
        raise MQTTError("length field runs past the end of the packet")
    return buf[pos + 2 : stop], stop


def read_str(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    """Read a UTF-8 Encoded String; bad UTF-8 (surrogates included) or U+0000 is malformed."""
    raw, pos = read_binary(buf, pos, end)
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise MQTTError("string is not valid UTF-8") from None
    if "\x00" in text:
        raise MQTTError("string contains U+0000")
    return text, pos


def encode_binary(data: bytes) -> bytes:
    """Encode Binary Data with its two-byte length prefix."""
    if len(data) > 0xFFFF:
        raise ValueError("string or binary field longer than 65535 bytes")
    return _U16.pack(len(data)) + data


def encode_str(text: str) -> bytes:
    """Encode a UTF-8 Encoded String with its two-byte length prefix."""
    return encode_binary(text.encode())


# --- the property table ---------------------------------------------------------------

BYTE, U16, U32, VARINT, STR, BINARY, PAIR = range(7)


def _kinds(*kinds: int) -> int:
    mask = 0
    for kind in kinds:
        mask |= 1 << kind
    return mask


_ACKS = (PUBACK, PUBREC, PUBREL, PUBCOMP)
_FLAG = (0, 1, PROTOCOL_ERROR)
_NONZERO = (1, MAX_VARINT, PROTOCOL_ERROR)

# id: (name, data type, packet kinds allowed, (min, max, reason code if outside) or None)
PROPERTIES: dict[int, tuple[str, int, int, tuple[int, int, int] | None]] = {
    0x01: ("payload_format_indicator", BYTE, _kinds(PUBLISH, WILL), _FLAG),
    0x02: ("message_expiry_interval", U32, _kinds(PUBLISH, WILL), None),
    0x03: ("content_type", STR, _kinds(PUBLISH, WILL), None),
    0x08: ("response_topic", STR, _kinds(PUBLISH, WILL), None),
    0x09: ("correlation_data", BINARY, _kinds(PUBLISH, WILL), None),
    0x0B: ("subscription_identifier", VARINT, _kinds(PUBLISH, SUBSCRIBE), _NONZERO),
    0x11: ("session_expiry_interval", U32, _kinds(CONNECT, CONNACK, DISCONNECT), None),
    0x12: ("assigned_client_identifier", STR, _kinds(CONNACK), None),
    0x13: ("server_keep_alive", U16, _kinds(CONNACK), None),
    0x15: ("authentication_method", STR, _kinds(CONNECT, CONNACK, AUTH), None),
    0x16: ("authentication_data", BINARY, _kinds(CONNECT, CONNACK, AUTH), None),
    0x17: ("request_problem_information", BYTE, _kinds(CONNECT), _FLAG),
    0x18: ("will_delay_interval", U32, _kinds(WILL), None),
    0x19: ("request_response_information", BYTE, _kinds(CONNECT), _FLAG),
    0x1A: ("response_information", STR, _kinds(CONNACK), None),
    0x1C: ("server_reference", STR, _kinds(CONNACK, DISCONNECT), None),
    0x1F: (
        "reason_string",
        STR,
        _kinds(CONNACK, *_ACKS, SUBACK, UNSUBACK, DISCONNECT, AUTH),
        None,
    ),
    0x21: ("receive_maximum", U16, _kinds(CONNECT, CONNACK), _NONZERO),
    0x22: ("topic_alias_maximum", U16, _kinds(CONNECT, CONNACK), None),
    0x23: ("topic_alias", U16, _kinds(PUBLISH), (1, 0xFFFF, TOPIC_ALIAS_INVALID)),
    0x24: ("maximum_qos", BYTE, _kinds(CONNACK), _FLAG),
    0x25: ("retain_available", BYTE, _kinds(CONNACK), _FLAG),
    0x26: (
        "user_property",
        PAIR,
        _kinds(CONNECT, CONNACK, PUBLISH, WILL, *_ACKS, SUBSCRIBE, SUBACK)
        | _kinds(UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH),
        None,
    ),
    0x27: ("maximum_packet_size", U32, _kinds(CONNECT, CONNACK), (1, 0xFFFFFFFF, PROTOCOL_ERROR)),
    0x28: ("wildcard_subscription_available", BYTE, _kinds(CONNACK), _FLAG),
    0x29: ("subscription_identifier_available", BYTE, _kinds(CONNACK), _FLAG),
    0x2A: ("shared_subscription_available", BYTE, _kinds(CONNACK), _FLAG),
}

PROPERTY_IDS: dict[str, int] = {entry[0]: pid for pid, entry in PROPERTIES.items()}
PROPERTY_TYPES: dict[str, int] = {entry[0]: entry[1] for entry in PROPERTIES.values()}

# Properties that may repeat and are therefore held as lists.
LIST_PROPERTIES = frozenset({"user_property", "subscription_identifier"})

_EMPTY = b"\x00"


def _read_value(kind: int, buf: bytes, pos: int, end: int) -> tuple[object, int]:
    """Read one property value of the given data type."""
    if kind == STR:
        return read_str(buf, pos, end)
    if kind == BYTE:
        if pos >= end:
            raise MQTTError("truncated property")
        return buf[pos], pos + 1
    if kind in (U16, U32):
        stop = pos + (2 if kind == U16 else 4)
        if stop > end:
            raise MQTTError("truncated property")
        return int.from_bytes(buf[pos:stop]), stop
    if kind == VARINT:
        return read_varint(buf, pos, end)
    if kind == BINARY:
        return read_binary(buf, pos, end)
    name, pos = read_str(buf, pos, end)
    value, pos = read_str(buf, pos, end)
    return (name, value), pos


def decode_properties(
    buf: bytes, offset: int, packet_kind: int, end: int | None = None
) -> tuple[dict, int]:
    """Decode a property block (length prefix included) that must end by ``end``.

    Unknown identifiers, identifiers not valid for the packet kind and truncation are
    malformed (0x81, MQTT 5 2.2.2.2); a repeated single property or an out-of-range value
    is a protocol error (0x82), except a zero Topic Alias (0x94).
    """
    if end is None:
        end = len(buf)
    length, pos = read_varint(buf, offset, end)
    stop = pos + length
    if stop > end:
        raise MQTTError("property length runs past the end of the packet")
    props: dict = {}
    while pos < stop:
        entry = PROPERTIES.get(buf[pos])
        if entry is None:
            raise MQTTError(f"unknown property identifier 0x{buf[pos]:02x}")
        name, kind, allowed, limits = entry
        if not allowed >> packet_kind & 1:
            raise MQTTError(f"property {name} not allowed here")
        value, pos = _read_value(kind, buf, pos + 1, stop)
        if limits is not None and not limits[0] <= value <= limits[1]:
            raise MQTTError(f"property {name} has invalid value {value}", limits[2])
        if name not in props:
            props[name] = [value] if name in LIST_PROPERTIES else value
        elif name == "user_property" or (name in LIST_PROPERTIES and packet_kind == PUBLISH):
            props[name].append(value)
        else:
            raise MQTTError(f"property {name} included more than once", PROTOCOL_ERROR)
    return props, stop


def _encode_value(pid: int, kind: int, value: object) -> bytes:
    """Encode one property: identifier then value."""
    if kind == STR:
        return bytes((pid,)) + encode_str(value)
    if kind == BYTE:
        return bytes((pid, value))
    if kind == U16:
        return struct.pack(">BH", pid, value)
    if kind == U32:
        return struct.pack(">BI", pid, value)
    if kind == VARINT:
        return bytes((pid,)) + encode_varint(value)
    if kind == BINARY:
        return bytes((pid,)) + encode_binary(value)
    name, text = value
    return bytes((pid,)) + encode_str(name) + encode_str(text)


def encode_properties(props: dict | None) -> bytes:
    """Encode a property dict as a property block with its length prefix."""
    if not props:
        return _EMPTY
    body = encode_property_items(props)
    return encode_varint(len(body)) + body


def encode_property_items(props: dict) -> bytes:
    """Encode a property dict without the length prefix (to be joined with others)."""
    parts = []
    for name, value in props.items():
        pid = PROPERTY_IDS.get(name)
        if pid is None:
            raise ValueError(f"unknown MQTT 5 property {name!r}")
        kind = PROPERTY_TYPES[name]
        if name in LIST_PROPERTIES:
            parts.extend(_encode_value(pid, kind, item) for item in value)
        else:
            parts.append(_encode_value(pid, kind, value))
    return b"".join(parts)
