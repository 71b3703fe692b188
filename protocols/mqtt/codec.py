"""Sans-I/O MQTT codec for 3.1 (level 3), 3.1.1 (level 4) and 5.0 (level 5).

The decoder works on one ``bytes`` object per ``feed`` and indexes into it with absolute
offsets, so a packet costs a few slices and no per-byte Python loop. PUBLISH and the
acknowledgements have dedicated fast paths because they dominate broker traffic.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from protocols.mqtt.properties import (
    CONNACK,
    CONNECT,
    MALFORMED,
    PROTOCOL_ERROR,
    PUBLISH,
    SUBACK,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
    WILL,
    MQTTError,
    decode_properties,
    encode_binary,
    encode_properties,
    encode_str,
    encode_varint,
    read_binary,
    read_str,
    read_varint,
)

__all__ = [
    "Auth",
    "Connack",
    "Connect",
    "Decoder",
    "Disconnect",
    "MQTTError",
    "Packet",
    "Pingreq",
    "Pingresp",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "Suback",
    "Subscribe",
    "SubscriptionOptions",
    "Unsuback",
    "Unsubscribe",
    "Will",
    "encode",
    "encode_puback",
    "encode_publish",
    "valid_topic_filter",
    "valid_topic_name",
]

#: The properties of every MQTT 3.x packet: shared and read-only, so decoding allocates none.
NO_PROPERTIES: Mapping[str, object] = MappingProxyType({})

#: Distinct topic names a decoder remembers (see _decode_topic).
TOPIC_CACHE_SIZE = 256
#: PUBLISH property blocks up to this many bytes are decoded once per connection (up to
#: PROPERTY_CACHE_SIZE distinct blocks).
PROPERTY_CACHE_BLOCK = 256
PROPERTY_CACHE_SIZE = 64

PACKET_TOO_LARGE = 0x95
UNSUPPORTED_PROTOCOL_VERSION = 0x84
CLIENT_ID_NOT_VALID = 0x85
TOPIC_NAME_INVALID = 0x90

_PROTOCOL_NAMES = {3: "MQIsdp", 4: "MQTT", 5: "MQTT"}

# --- packets --------------------------------------------------------------------------


@dataclass(slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Connect:
    protocol_name: str
    protocol_level: int
    clean_start: bool
    keepalive: int
    client_id: str
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Connack:
    session_present: bool
    reason_code: int
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None
    properties: dict = field(default_factory=dict)
    #: the packet as received, for a 3.x QoS 0 or 1 publish without flags: what a subscriber
    #: of the same protocol level and QoS is sent (QoS 1: with its own packet id), so the
    #: broker forwards it instead of encoding it again; for an MQTT 5 QoS 0 publish, what
    #: a subscriber whose encoding of topic and properties is byte for byte the same gets
    raw: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class Publishes:
    """PUBLISH packets in a row of one size that share topic, QoS (0 or 1) and properties,
    without retain or DUP, as a decoder with ``runs`` reads a stream (once its topic and
    properties are known): one object for the run, not one per packet."""

    topic: str
    qos: int
    properties: Mapping
    payloads: list[bytes]
    packet_ids: list[int] | None  # QoS 1
    #: the packets as received where ``Publish.raw`` would keep them: every one for 3.x;
    #: the first for MQTT 5 QoS 0 (what subscribers that encode alike may share); None
    raws: list[bytes] | None

    def each(self) -> list[Publish]:
        topic, qos, properties, raws = self.topic, self.qos, self.properties, self.raws
        ids = self.packet_ids or [None] * len(self.payloads)
        return [
            Publish(
                topic, payload, qos, False, False, packet_id, properties,
                raws[index] if raws is not None and index < len(raws) else None,
            )
            for index, (payload, packet_id) in enumerate(zip(self.payloads, ids, strict=True))
        ]  # fmt: skip


@dataclass(slots=True)
class _Ack:
    packet_id: int
    reason_code: int = 0
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Puback(_Ack):
    pass


@dataclass(slots=True)
class Pubacks:
    """Plain PUBACKs in a row (no reason code or properties), as the decoder reads them:
    a subscriber acks a round of deliveries at once."""

    packet_ids: tuple[int, ...]

    def each(self) -> list[Puback]:
        return [Puback(packet_id, 0, {}) for packet_id in self.packet_ids]


#: The packets that stand for several (see ``Decoder``).
_RUNS = (Publishes, Pubacks)


@dataclass(slots=True)
class Pubrec(_Ack):
    pass


@dataclass(slots=True)
class Pubrel(_Ack):
    pass


@dataclass(slots=True)
class Pubcomp(_Ack):
    pass


@dataclass(slots=True)
class SubscriptionOptions:
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(slots=True)
class Subscribe:
    packet_id: int
    topics: list[tuple[str, SubscriptionOptions]]
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Suback:
    packet_id: int
    reason_codes: list[int]
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    filters: list[str]
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Unsuback:
    packet_id: int
    reason_codes: list[int] = field(default_factory=list)
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Pingreq:
    pass


@dataclass(slots=True)
class Pingresp:
    pass


@dataclass(slots=True)
class Disconnect:
    reason_code: int = 0
    properties: dict = field(default_factory=dict)


@dataclass(slots=True)
class Auth:
    reason_code: int = 0
    properties: dict = field(default_factory=dict)


Packet = (
    Connect
    | Connack
    | Publish
    | Publishes
    | Puback
    | Pubacks
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
    | Auth
)

# --- topic validation -----------------------------------------------------------------


def valid_topic_name(topic: str) -> bool:
    """A topic name to publish to: non-empty, no wildcard, no U+0000."""
    return bool(topic) and "+" not in topic and "#" not in topic and "\x00" not in topic


def valid_topic_filter(topic_filter: str) -> bool:
    """A subscription filter: '+' fills a whole level, '#' a whole level and only the last."""
    if not topic_filter or "\x00" in topic_filter:
        return False
    if "+" not in topic_filter and "#" not in topic_filter:
        return True
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != last):
            return False
        if "+" in level and level != "+":
            return False
    return True


# --- decoding -------------------------------------------------------------------------


def _build_header_errors(level5: bool) -> list[str | None]:
    """Map every possible first byte to why it is invalid, or None when it is fine."""
    errors: list[str | None] = []
    for byte in range(256):
        kind, flags = byte >> 4, byte & 0x0F
        if kind == 0 or (kind == 15 and not level5):
            errors.append(f"unknown packet type {kind}")
        elif kind == 3:
            if flags & 0x06 == 0x06:
                errors.append("PUBLISH with QoS 3")
            elif flags & 0x08 and not flags & 0x06:
                errors.append("PUBLISH with QoS 0 and DUP set")
            else:
                errors.append(None)
        elif flags != (0b0010 if kind in (6, 8, 10) else 0):
            errors.append(f"reserved flags 0x{flags:x} on packet type {kind}")
        else:
            errors.append(None)
    return errors


_HEADER_ERRORS_V4 = _build_header_errors(level5=False)
_HEADER_ERRORS_V5 = _build_header_errors(level5=True)


def _short(name: str) -> MQTTError:
    return MQTTError(f"{name} packet too short")


def _expect_end(pos: int, end: int, name: str) -> None:
    """Reject bytes left over after the last field of a packet."""
    if pos != end:
        raise MQTTError(f"{name} has {end - pos} unexpected trailing bytes")


def _packet_id(buf: bytes, pos: int, end: int, name: str) -> int:
    """Read the two-byte packet identifier that must be non-zero (MQTT-2.3.1-1)."""
    if pos + 2 > end:
        raise _short(name)
    packet_id = buf[pos] << 8 | buf[pos + 1]
    if not packet_id:
        raise MQTTError(f"{name} with packet identifier 0", PROTOCOL_ERROR)
    return packet_id


def _decode_connect(dec: Decoder, b0: int, buf: bytes, pos: int, end: int) -> Connect:
    name, pos = read_str(buf, pos, end)
    if name not in ("MQTT", "MQIsdp"):
        raise MQTTError(f"unknown protocol name {name!r}")
    if pos + 4 > end:
        raise _short("CONNECT")
    level, flags = buf[pos], buf[pos + 1]
    keepalive = buf[pos + 2] << 8 | buf[pos + 3]
    if _PROTOCOL_NAMES.get(level) != name:
        raise MQTTError(f"unsupported protocol {name} level {level}", UNSUPPORTED_PROTOCOL_VERSION)
    dec.protocol_level = level
    _check_connect_flags(flags, level)
    pos += 4
    properties: dict = {}
    if level == 5:
        properties, pos = decode_properties(buf, pos, CONNECT, end)
    client_id, pos = read_str(buf, pos, end)
    if not client_id and level != 5 and not flags & 0x02:
        raise MQTTError("empty client identifier needs clean session", CLIENT_ID_NOT_VALID)
    will = None
    if flags & 0x04:
        will, pos = _decode_will(flags, level, buf, pos, end)
    username = password = None
    if flags & 0x80:
        username, pos = read_str(buf, pos, end)
    if flags & 0x40:
        password, pos = read_binary(buf, pos, end)
    _expect_end(pos, end, "CONNECT")
    return Connect(
        name, level, bool(flags & 0x02), keepalive, client_id, username, password, will, properties
    )


def _check_connect_flags(flags: int, level: int) -> None:
    """Connect flags rules of MQTT-3.1.2-3 (reserved bit) and the will and password rules."""
    if flags & 0x01:
        raise MQTTError("reserved connect flag set")
    will_qos = flags >> 3 & 3
    if not flags & 0x04 and flags & 0x38:
        raise MQTTError("will QoS or retain set without the will flag")
    if will_qos == 3:
        raise MQTTError("will QoS 3")
    if level != 5 and flags & 0x40 and not flags & 0x80:
        raise MQTTError("password flag without username flag")


def _decode_will(flags: int, level: int, buf: bytes, pos: int, end: int) -> tuple[Will, int]:
    properties: dict = {}
    if level == 5:
        properties, pos = decode_properties(buf, pos, WILL, end)
    topic, pos = read_str(buf, pos, end)
    if not valid_topic_name(topic):
        raise MQTTError(f"invalid will topic {topic!r}", TOPIC_NAME_INVALID)
    payload, pos = read_binary(buf, pos, end)
    return Will(topic, payload, flags >> 3 & 3, bool(flags & 0x20), properties), pos


def _decode_connack(dec: Decoder, b0: int, buf: bytes, pos: int, end: int) -> Connack:
    if pos + 2 > end:
        raise _short("CONNACK")
    ack_flags, reason_code = buf[pos], buf[pos + 1]
    if ack_flags & 0xFE:
        raise MQTTError("reserved CONNACK flags set")
    pos += 2
    properties: dict = {}
    if dec.protocol_level == 5:
        properties, pos = decode_properties(buf, pos, CONNACK, end)
    _expect_end(pos, end, "CONNACK")
    return Connack(bool(ack_flags), reason_code, properties)


def _decode_topic(dec: Decoder, raw_topic: bytes) -> str:
    """Decode and check a topic name, remembering it: publishers repeat their topics, so
    most packets skip the UTF-8 decode and the character checks."""
    try:
        topic = raw_topic.decode()
    except UnicodeDecodeError:
        raise MQTTError("topic is not valid UTF-8") from None
    if "\x00" in topic:
        raise MQTTError("topic contains U+0000")
    if "+" in topic or "#" in topic:
        raise MQTTError(f"wildcard in topic name {topic!r}", TOPIC_NAME_INVALID)
    if topic:
        if len(dec.topics) >= TOPIC_CACHE_SIZE:
            dec.topics.clear()
        dec.topics[raw_topic] = topic
    return topic


def _publish_properties(dec: Decoder, buf: bytes, pos: int, end: int) -> tuple[Mapping, int]:
    """An MQTT 5 PUBLISH's properties.  A publisher repeats its property block (the same
    user properties, the same topic alias), so small blocks are decoded once and the
    decoded mapping is shared: it must not be modified."""
    if pos < end and not buf[pos]:  # the usual empty property block
        return NO_PROPERTIES, pos + 1
    length, start = read_varint(buf, pos, end)
    stop = start + length
    if length > PROPERTY_CACHE_BLOCK or stop > end:
        return decode_properties(buf, pos, PUBLISH, end)
    block = buf[start:stop]
    cache = dec.property_blocks
    properties = cache.get(block)
    if properties is None:
        decoded, stop = decode_properties(buf, pos, PUBLISH, end)
        if len(cache) >= PROPERTY_CACHE_SIZE:
            cache.clear()
        properties = cache[block] = MappingProxyType(decoded)
    return properties, stop


def _decode_publish(dec: Decoder, b0: int, buf: bytes, pos: int, end: int) -> Publish:
    if pos + 2 > end:
        raise _short("PUBLISH")
    stop = pos + 2 + (buf[pos] << 8 | buf[pos + 1])
    if stop > end:
        raise MQTTError("PUBLISH topic length runs past the end of the packet")
    raw_topic = buf[pos + 2 : stop]
    topic = dec.topics.get(raw_topic)
    if topic is None:
        topic = _decode_topic(dec, raw_topic)
    qos = b0 >> 1 & 3
    packet_id = None
    if qos:
        packet_id = _packet_id(buf, stop, end, "PUBLISH")
        stop += 2
    if dec.protocol_level != 5:
        if not topic:
            raise MQTTError("empty topic name", TOPIC_NAME_INVALID)
        if b0 == 0x30:
            length = end - pos
            head = 2 if length < 0x80 else 3 if length < 0x4000 else 4 if length < 0x200000 else 5
            return Publish(
                topic, buf[stop:end], 0, False, False, None, NO_PROPERTIES, buf[pos - head : end]
            )
        properties = NO_PROPERTIES
    else:
        properties, stop = _publish_properties(dec, buf, stop, end)
        if not topic and "topic_alias" not in properties:
            raise MQTTError("empty topic without topic alias", PROTOCOL_ERROR)
    return Publish(topic, buf[stop:end], qos, b0 & 1 == 1, b0 & 8 == 8, packet_id, properties)


def _decode_ack(dec: Decoder, b0: int, buf: bytes, pos: int, end: int) -> _Ack:
    """PUBACK, PUBREC, PUBREL, PUBCOMP; in 5 the reason code and properties are optional."""
    cls = _ACK_CLASSES[b0 >> 4]
    if end - pos == 2:
        return cls(buf[pos] << 8 | buf[pos + 1], 0, {})
    if end - pos < 2 or dec.protocol_level != 5:
        raise MQTTError(f"{cls.__name__.upper()} must have remaining length 2")
    packet_id = buf[pos] << 8 | buf[pos + 1]
    reason_code = buf[pos + 2]
    properties: dict = {}
    if end - pos > 3:
        properties, pos = decode_properties(buf, pos + 3, b0 >> 4, end)
        _expect_end(pos, end, cls.__name__.upper())
    return cls(packet_id, reason_code, properties)


def _decode_subscribe(dec: Decoder, b0: int, buf: bytes, pos: int, end: int) -> Subscribe:
    packet_id = _packet_id(buf, pos, end, "SUBSCRIBE")
    pos += 2
    level5 = dec.protocol_level == 5
    properties: dict = {}
    if level5:
        properties, pos = decode_properties(buf, pos, SUBSCRIBE, end)
    topics = []
    while pos < end:
        topic_filter, pos = read_str(buf, pos, end)
        if pos >= end:
            raise MQTTError("SUBSCRIBE filter without subscription options")
        topics.append((topic_filter, _subscription_options(buf[pos], level5)))
        pos += 1
    if not topics:
        raise MQTTError("SUBSCRIBE without topic filters", PROTOCOL_ERROR)
    return Subscribe(packet_id, topics, properties)


def _subscription_options(byte: int, level5: bool) -> SubscriptionOptions:
    """Options byte: reserved bits are malformed; QoS or Retain Handling 3 break the rules."""
    if byte & (0xC0 if level5 else 0xFC):
        raise MQTTError("reserved subscription option bits set")
    qos = byte & 3
    retain_handling = byte >> 4 & 3
    # 3.1.1 calls QoS 3 malformed; 5.0 calls QoS 3 and Retain Handling 3 protocol errors.
    if qos == 3:
        raise MQTTError("subscription QoS 3", PROTOCOL_ERROR if level5 else MALFORMED)
    if retain_handling == 3:
        raise MQTTError("subscription retain handling 3", PROTOCOL_ERROR)
    return SubscriptionOptions(qos, bool(byte & 0x04), bool(byte & 0x08), retain_handling)


def _decode_suback(dec: Decoder, b0: int, buf: bytes, pos: int, end: int) -> Suback:
    if pos + 2 > end:
        raise _short("SUBACK")
    packet_id = buf[pos] << 8 | buf[pos + 1]
    properties: dict = {}
    pos += 2
    if dec.protocol_level == 5:
        properties, pos = decode_properties(buf, pos, SUBACK, end)
    return Suback(packet_id, list(buf[pos:end]), properties)


def _decode_unsubscribe(dec: Decoder, b0: int, buf: bytes, pos: int, end: int) -> Unsubscribe:
    packet_id = _packet_id(buf, pos, end, "UNSUBSCRIBE")
    pos += 2
    properties: dict = {}
    if dec.protocol_level == 5:
        properties, pos = decode_properties(buf, pos, UNSUBSCRIBE, end)
    filters = []
    while pos < end:
        topic_filter, pos = read_str(buf, pos, end)
        filters.append(topic_filter)
    if not filters:
        raise MQTTError("UNSUBSCRIBE without topic filters", PROTOCOL_ERROR)
    return Unsubscribe(packet_id, filters, properties)


def _decode_unsuback(dec: Decoder, b0: int, buf: bytes, pos: int, end: int) -> Unsuback:
    if pos + 2 > end:
        raise _short("UNSUBACK")
    packet_id = buf[pos] << 8 | buf[pos + 1]
    pos += 2
    if dec.protocol_level != 5:
        _expect_end(pos, end, "UNSUBACK")
        return Unsuback(packet_id, [], {})
    properties, pos = decode_properties(buf, pos, UNSUBACK, end)
    return Unsuback(packet_id, list(buf[pos:end]), properties)


def _decode_ping(dec: Decoder, b0: int, buf: bytes, pos: int, end: int) -> Pingreq | Pingresp:
    cls = Pingreq if b0 >> 4 == 12 else Pingresp
    _expect_end(pos, end, cls.__name__.upper())
    return cls()


def _decode_reason(dec: Decoder, b0: int, buf: bytes, pos: int, end: int) -> Disconnect | Auth:
    """DISCONNECT and AUTH: in 5 an empty body means reason 0, properties are optional."""
    cls = Disconnect if b0 >> 4 == 14 else Auth
    if pos == end:
        return cls(0, {})
    if dec.protocol_level != 5:
        raise MQTTError(f"{cls.__name__.upper()} must have remaining length 0")
    properties: dict = {}
    if end - pos > 1:
        properties, stop = decode_properties(buf, pos + 1, b0 >> 4, end)
        _expect_end(stop, end, cls.__name__.upper())
    return cls(buf[pos], properties)


_ACK_CLASSES: dict[int, type[_Ack]] = {4: Puback, 5: Pubrec, 6: Pubrel, 7: Pubcomp}

_DECODERS = (
    None,
    _decode_connect,
    _decode_connack,
    _decode_publish,
    _decode_ack,
    _decode_ack,
    _decode_ack,
    _decode_ack,
    _decode_subscribe,
    _decode_suback,
    _decode_unsubscribe,
    _decode_unsuback,
    _decode_ping,
    _decode_ping,
    _decode_reason,
    _decode_reason,
)


def _remaining_length(buf: bytes, pos: int, n: int) -> tuple[int, int]:
    """Decode a multi-byte remaining length; (-1, pos) means more bytes are needed."""
    stop = min(pos + 4, n)
    for index in range(pos, stop):
        if buf[index] < 0x80:
            return read_varint(buf, pos, index + 1)
    if stop - pos == 4:
        raise MQTTError("remaining length longer than 4 bytes")
    return -1, pos


#: Most PUBACKs unpacked in one go (one cached unpacker per count up to it).
PUBACK_RUN = 128
#: Most PUBLISH packets after a run's first read into its ``Publishes`` (the adapter hands
#: a connection slices of about this many messages, checking flow control in between).
RUN = 64


def _repeats(buf: bytes, start: int, stride: int, pattern: bytes, most: int) -> int:
    """How many of the ``most`` places ``stride`` bytes apart from ``start`` on hold
    ``pattern``, counted until the first that does not: packets in a row are compared
    column by column, a byte of the pattern against all of them at once (for a few
    packets with a long pattern, one by one is cheaper)."""
    if most < 2 * len(pattern):
        count = 0
        while count < most and buf.startswith(pattern, start + count * stride):
            count += 1
        return count
    count = most
    for offset in range(len(pattern)):
        first = start + offset
        column = buf[first : first + count * stride : stride]
        count -= len(column.lstrip(pattern[offset : offset + 1]))
        if not count:
            break
    return count


def one_by_one(packets: list[Packet]) -> list[Packet]:
    """Decoded packets with runs (``Publishes``, ``Pubacks``) as the packets they hold."""
    if not any(type(p) in _RUNS for p in packets):
        return packets
    return [each for p in packets for each in (p.each() if type(p) in _RUNS else (p,))]


@functools.cache
def _puback_ids(count: int) -> struct.Struct:
    """Unpacks the packet ids of ``count`` PUBACKs of remaining length 2 in a row."""
    return struct.Struct(">" + "2xH" * count)


class Decoder:
    """Incremental decoder: feed it bytes as they arrive, get back whole packets.

    With ``runs``, a stream's PUBLISH packets come as ``Publishes`` (once its topic and
    properties are known) and plain PUBACKs in a row as ``Pubacks``: a broker handles a
    run at once.  Without, every packet is its own object.

    After an MQTTError the decoder stays failed: the connection must be closed. The error
    carries ``packets``, the packets decoded from the same feed before the bad one.
    """

    def __init__(self, max_packet_size: int = 268_435_455, *, runs: bool = False) -> None:
        self.max_packet_size = max_packet_size
        self.runs = runs
        self.protocol_level = 4
        self._pending = bytearray()
        self._need = 0
        self._error: MQTTError | None = None
        self.topics: dict[bytes, str] = {}
        self.property_blocks: dict[bytes, Mapping] = {}
        #: MQTT 5 QoS 0 PUBLISH topic and property bytes seen in a row -> (topic, properties)
        self.publish_heads: dict[bytes, tuple[str, Mapping]] = {}

    def feed(self, data: bytes) -> list[Packet]:
        """Return every packet completed by data; keep any partial packet for later."""
        if self._error is not None:
            raise self._error
        if self._pending:
            self._pending += data
            if len(self._pending) < self._need:
                return []
            buf = bytes(self._pending)
        else:
            buf = data if type(data) is bytes else bytes(data)
        packets: list[Packet] = []
        try:
            pos = self._decode(buf, packets)
        except MQTTError as error:
            error.packets = packets if self.runs else one_by_one(packets)
            self._error = error
            raise
        self._pending = bytearray(memoryview(buf)[pos:])
        return packets if self.runs else one_by_one(packets)

    def _decode(self, buf: bytes, packets: list[Packet]) -> int:
        """Append complete packets from buf to packets; return where the first partial starts."""
        pos = 0
        n = len(buf)
        limit = self.max_packet_size
        append = packets.append
        errors = _HEADER_ERRORS_V5 if self.protocol_level == 5 else _HEADER_ERRORS_V4
        v3 = self.protocol_level != 5
        topics = self.topics
        blocks = self.property_blocks
        heads = self.publish_heads
        # a stream's publishes often repeat one packet head (fixed header, topic, MQTT 5
        # properties) and size: once one was decoded, its followers are known by the head
        run_head = run_tail = b""  # (the tail: 5.0 QoS 1 property bytes after the packet id)
        run_size = run_qos = 0
        run_topic = ""
        run_properties: Mapping = NO_PROPERTIES
        run_at = -1  # len(packets) just after the packet that set the head
        while pos < n:
            if run_head and pos + run_size <= n and buf.startswith(run_head, pos):
                # the run at once: the following packets that start with the head
                size = run_size
                count = _repeats(buf, pos, size, run_head, min((n - pos) // size, RUN))
                at = len(run_head)
                ids = None
                if run_qos:
                    # QoS 1: the packet id follows the head, then 5.0's properties (the tail)
                    stop = pos + count * size
                    ids = [
                        high << 8 | low
                        for high, low in zip(
                            buf[pos + at : stop : size],
                            buf[pos + at + 1 : stop : size],
                            strict=True,
                        )
                    ]
                    if 0 in ids:  # the run ends before an invalid packet id, reported below
                        count = ids.index(0)
                    if run_tail and count:
                        count = _repeats(buf, pos + at + 2, size, run_tail, count)
                    del ids[count:]
                    at += 2 + len(run_tail)
                if count:
                    stop = pos + count * size
                    places = range(pos, stop, size)
                    payloads = [buf[p + at : p + size] for p in places]
                    if v3:
                        raws = [buf[p : p + size] for p in places]
                    else:  # MQTT 5: QoS 0 keeps the first packet (QoS 1 none)
                        raws = None if run_qos else [buf[pos : pos + size]]
                    if run_at == len(packets):  # the packet that set the head starts the run
                        first = packets.pop()
                        payloads.insert(0, first.payload)
                        if ids is not None:
                            ids.insert(0, first.packet_id)
                        if raws is not None:
                            raws.insert(0, first.raw)
                    run_at = -1
                    append(Publishes(run_topic, run_qos, run_properties, payloads, ids, raws))
                    pos = stop
                    continue
            b0 = buf[pos]
            if errors[b0] is not None:
                raise MQTTError(errors[b0])
            if pos + 1 == n:
                self._need = 2
                break
            length = buf[pos + 1]
            start = pos + 2
            if length >= 0x80:
                length, start = _remaining_length(buf, pos + 1, n)
                if length < 0:
                    self._need = n - pos + 1
                    break
            end = start + length
            if end - pos > limit:
                raise MQTTError(
                    f"packet of {end - pos} bytes exceeds the maximum", PACKET_TOO_LARGE
                )
            if end > n:
                self._need = end - pos
                break
            if (b0 == 0x30 or b0 == 0x32) and v3:
                # the commonest packets by far, 3.x QoS 0/1 PUBLISH without flags, inline
                # when the topic is one already validated (cached topics are valid, non-empty)
                stop = (
                    start + 2 + (buf[start] << 8 | buf[start + 1]) if end > start + 1 else end + 1
                )
                topic = topics.get(buf[start + 2 : stop]) if stop <= end else None
                if topic and b0 == 0x30:
                    raw = buf[pos:end]
                    append(Publish(topic, buf[stop:end], 0, False, False, None, NO_PROPERTIES, raw))
                    run_head, run_size, run_qos, run_topic = buf[pos:stop], end - pos, 0, topic
                    run_at = len(packets)
                    pos = end
                    continue
                packet_id = buf[stop] << 8 | buf[stop + 1] if topic and stop + 2 <= end else 0
                if packet_id:
                    payload = buf[stop + 2 : end]
                    raw = buf[pos:end]
                    append(Publish(topic, payload, 1, False, False, packet_id, NO_PROPERTIES, raw))
                    run_head, run_size, run_qos, run_topic = buf[pos:stop], end - pos, 1, topic
                    run_tail, run_properties = b"", NO_PROPERTIES
                    run_at = len(packets)
                    pos = end
                    continue
            elif b0 == 0x30 or b0 == 0x32:
                # MQTT 5 QoS 0/1 PUBLISH without flags, inline when its topic (or an empty
                # one, for an alias) and its property block are ones already decoded; for
                # QoS 0 first by the two together, as a stream repeats them packet by packet
                stop = start + 2 + (buf[start] << 8 | buf[start + 1]) if end > start + 1 else end
                if b0 == 0x30 and stop < end and buf[stop] < 0x80:
                    props_end = stop + 1 + buf[stop]
                    head = heads.get(buf[start:props_end]) if props_end <= end else None
                    if head is not None:
                        payload = buf[props_end:end]
                        raw = buf[pos:end]
                        append(Publish(head[0], payload, 0, False, False, None, head[1], raw))
                        run_head, run_size, run_qos = buf[pos:props_end], end - pos, 0
                        run_topic, run_properties = head
                        run_at = len(packets)
                        pos = end
                        continue
                raw_topic = buf[start + 2 : stop]
                topic = None if stop > end else topics.get(raw_topic) if raw_topic else ""
                packet_id = None
                if b0 == 0x32 and topic is not None:
                    packet_id = buf[stop] << 8 | buf[stop + 1] if stop + 2 <= end else 0
                    stop += 2
                if topic is not None and packet_id != 0 and stop < end and buf[stop] < 0x80:
                    props_end = stop + 1 + buf[stop]
                    properties = (
                        blocks.get(buf[stop + 1 : props_end]) if buf[stop] else NO_PROPERTIES
                    )
                    if (
                        properties is not None
                        and props_end <= end
                        and (topic or "topic_alias" in properties)
                    ):
                        qos = b0 >> 1 & 1
                        payload = buf[props_end:end]
                        raw = None
                        if not qos:
                            raw = buf[pos:end]
                            if len(heads) < PROPERTY_CACHE_SIZE:
                                heads[buf[start:props_end]] = (topic, properties)
                            run_head, run_size, run_qos = buf[pos:props_end], end - pos, 0
                        else:
                            run_head, run_tail = buf[pos : stop - 2], buf[stop:props_end]
                            run_size, run_qos = end - pos, 1
                        run_topic, run_properties = topic, properties
                        append(
                            Publish(topic, payload, qos, False, False, packet_id, properties, raw)
                        )
                        run_at = len(packets)
                        pos = end
                        continue
            elif b0 == 0x40 and length == 2:  # PUBACK, the other hot packet
                packet_id = buf[start] << 8 | buf[start + 1]
                if packet_id:
                    # a subscriber acks a round of deliveries at once: a run of PUBACKs
                    # is recognised by its strided bytes and its ids unpacked together
                    stop = pos + 4 * min((n - pos) >> 2, PUBACK_RUN)
                    kinds, lengths = buf[pos:stop:4], buf[pos + 1 : stop : 4]
                    count = min(
                        len(kinds) - len(kinds.lstrip(b"\x40")),
                        len(lengths) - len(lengths.lstrip(b"\x02")),
                    )
                    if count > 1:
                        ids = _puback_ids(count).unpack_from(buf, pos)
                        if 0 not in ids:
                            append(Pubacks(ids))
                            pos += 4 * count
                            continue
                    append(Puback(packet_id, 0, NO_PROPERTIES))
                    pos = end
                    continue
            append(_DECODERS[b0 >> 4](self, b0, buf, start, end))
            pos = end
            if b0 == 0x10:  # CONNECT sets the protocol level, which selects the header rules
                errors = _HEADER_ERRORS_V5 if self.protocol_level == 5 else _HEADER_ERRORS_V4
                v3 = self.protocol_level != 5
        return pos


# --- encoding -------------------------------------------------------------------------

_HEAD_U16 = struct.Struct(">BBH").pack
_U16 = struct.Struct(">H").pack


def _frame(b0: int, body: bytes) -> bytes:
    """Prefix a packet body with its fixed header."""
    return bytes((b0,)) + encode_varint(len(body)) + body


def encode_publish(
    topic: str,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    packet_id: int | None,
    properties: dict | None,
    protocol_level: int,
) -> bytes:
    """Encode a PUBLISH without building a Publish object (the broker's hottest path)."""
    props = encode_properties(properties) if protocol_level == 5 else b""
    return encode_publish_block(topic, payload, qos, retain, dup, packet_id, props)


def encode_publish_block(
    topic: str,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    packet_id: int | None,
    props: bytes,
) -> bytes:
    """Encode a PUBLISH around a ready property block (empty for MQTT 3.x)."""
    raw_topic = topic.encode()
    length = len(raw_topic) + len(props) + len(payload) + (4 if qos else 2)
    b0 = 0x30 | qos << 1 | (1 if retain else 0) | (8 if dup else 0)
    if length < 128:
        head = _HEAD_U16(b0, length, len(raw_topic))
    else:
        head = bytes((b0,)) + encode_varint(length) + _U16(len(raw_topic))
    if qos:
        return b"".join((head, raw_topic, _U16(packet_id), props, payload))
    return b"".join((head, raw_topic, props, payload))


@functools.cache
def _packet_ids(count: int) -> Callable[..., bytes]:
    return struct.Struct(f">{count}H").pack


def stamp_packet_ids(buf: bytearray, offset: int, stride: int, packet_ids: Sequence[int]) -> None:
    """Write ``packet_ids`` into as many packets of ``stride`` bytes laid end to end in
    ``buf``, each at ``offset`` into its packet: packets of one shape are joined once and
    stamped column by column."""
    ids = _packet_ids(len(packet_ids))(*packet_ids)
    buf[offset::stride] = ids[0::2]
    buf[offset + 1 :: stride] = ids[1::2]


def encode_pubacks(packet_ids: Sequence[int]) -> bytes:
    """Plain PUBACKs for ``packet_ids``, one after the other (a run of publishes' acks)."""
    data = bytearray(b"\x40\x02\x00\x00" * len(packet_ids))
    stamp_packet_ids(data, 2, 4, packet_ids)
    return bytes(data)


def encode_puback(packet_id: int) -> bytes:
    """Encode a success PUBACK in its short form, valid in every protocol level."""
    return _HEAD_U16(0x40, 2, packet_id)


def _encode_connect(packet: Connect, protocol_level: int) -> bytes:
    level5 = packet.protocol_level == 5
    will = packet.will
    flags = (0x02 if packet.clean_start else 0) | (0x80 if packet.username is not None else 0)
    flags |= 0x40 if packet.password is not None else 0
    parts = [encode_str(packet.protocol_name), b"", _U16(packet.keepalive)]
    if level5:
        parts.append(encode_properties(packet.properties))
    parts.append(encode_str(packet.client_id))
    if will is not None:
        flags |= 0x04 | will.qos << 3 | (0x20 if will.retain else 0)
        if level5:
            parts.append(encode_properties(will.properties))
        parts += (encode_str(will.topic), encode_binary(will.payload))
    if packet.username is not None:
        parts.append(encode_str(packet.username))
    if packet.password is not None:
        parts.append(encode_binary(packet.password))
    parts[1] = bytes((packet.protocol_level, flags))
    return _frame(0x10, b"".join(parts))


def _encode_connack(packet: Connack, protocol_level: int) -> bytes:
    body = bytes((1 if packet.session_present else 0, packet.reason_code))
    if protocol_level == 5:
        body += encode_properties(packet.properties)
    return _frame(0x20, body)


def _encode_publish(packet: Publish, protocol_level: int) -> bytes:
    return encode_publish(
        packet.topic,
        packet.payload,
        packet.qos,
        packet.retain,
        packet.dup,
        packet.packet_id,
        packet.properties,
        protocol_level,
    )


def _encode_ack(packet: _Ack, protocol_level: int) -> bytes:
    """Use the shortest form the protocol level allows for the ack's content."""
    b0 = _ACK_HEADERS[type(packet)]
    if protocol_level != 5 or (packet.reason_code == 0 and not packet.properties):
        return _HEAD_U16(b0, 2, packet.packet_id)
    body = _U16(packet.packet_id) + bytes((packet.reason_code,))
    if packet.properties:
        body += encode_properties(packet.properties)
    return _frame(b0, body)


def _encode_subscribe(packet: Subscribe, protocol_level: int) -> bytes:
    parts = [_U16(packet.packet_id)]
    if protocol_level == 5:
        parts.append(encode_properties(packet.properties))
    for topic_filter, options in packet.topics:
        byte = options.qos
        if protocol_level == 5:
            byte |= options.no_local << 2 | options.retain_as_published << 3
            byte |= options.retain_handling << 4
        parts += (encode_str(topic_filter), bytes((byte,)))
    return _frame(0x82, b"".join(parts))


def _encode_suback(packet: Suback, protocol_level: int) -> bytes:
    props = encode_properties(packet.properties) if protocol_level == 5 else b""
    return _frame(0x90, _U16(packet.packet_id) + props + bytes(packet.reason_codes))


def _encode_unsubscribe(packet: Unsubscribe, protocol_level: int) -> bytes:
    parts = [_U16(packet.packet_id)]
    if protocol_level == 5:
        parts.append(encode_properties(packet.properties))
    parts.extend(encode_str(topic_filter) for topic_filter in packet.filters)
    return _frame(0xA2, b"".join(parts))


def _encode_unsuback(packet: Unsuback, protocol_level: int) -> bytes:
    if protocol_level != 5:
        return _HEAD_U16(0xB0, 2, packet.packet_id)
    body = _U16(packet.packet_id) + encode_properties(packet.properties)
    return _frame(0xB0, body + bytes(packet.reason_codes))


def _encode_ping(packet: Pingreq | Pingresp, protocol_level: int) -> bytes:
    return b"\xc0\x00" if type(packet) is Pingreq else b"\xd0\x00"


def _encode_reason(packet: Disconnect | Auth, protocol_level: int) -> bytes:
    """DISCONNECT and AUTH drop the reason code and properties when they are the defaults."""
    b0 = 0xE0 if type(packet) is Disconnect else 0xF0
    if b0 == 0xF0 and protocol_level != 5:
        raise ValueError("AUTH exists only in MQTT 5")
    if protocol_level != 5 or (packet.reason_code == 0 and not packet.properties):
        return bytes((b0, 0))
    body = bytes((packet.reason_code,))
    if packet.properties:
        body += encode_properties(packet.properties)
    return _frame(b0, body)


_ACK_HEADERS = {Puback: 0x40, Pubrec: 0x50, Pubrel: 0x62, Pubcomp: 0x70}


def _encode_pubacks(packet: Pubacks, protocol_level: int) -> bytes:
    return encode_pubacks(packet.packet_ids)


def _encode_publishes(packet: Publishes, protocol_level: int) -> bytes:
    return b"".join([_encode_publish(each, protocol_level) for each in packet.each()])


_ENCODERS = {
    Connect: _encode_connect,
    Connack: _encode_connack,
    Publish: _encode_publish,
    Publishes: _encode_publishes,
    Puback: _encode_ack,
    Pubacks: _encode_pubacks,
    Pubrec: _encode_ack,
    Pubrel: _encode_ack,
    Pubcomp: _encode_ack,
    Subscribe: _encode_subscribe,
    Suback: _encode_suback,
    Unsubscribe: _encode_unsubscribe,
    Unsuback: _encode_unsuback,
    Pingreq: _encode_ping,
    Pingresp: _encode_ping,
    Disconnect: _encode_reason,
    Auth: _encode_reason,
}


def encode(packet: Packet, protocol_level: int = 4) -> bytes:
    """Encode any packet; CONNECT uses its own protocol_level, the rest use the argument."""
    return _ENCODERS[type(packet)](packet, protocol_level)
