"""Minimal MQTT 3.1.1 and 5.0 encoding and a fast PUBLISH scanner for the load generator.

Every MQTT benchmark message has a 64-byte payload laid out as :mod:`benchmarks.batch`
describes; batches of packets are encoded once and stamped column-wise per send.

MQTT 5 publishers (``version=5``) put a user property and topic alias 1 in every PUBLISH:
the connection's first one names the topic (:func:`alias_setup`), the rest have an empty
topic.  MQTT 5 subscribers allow the broker up to :data:`SUBSCRIBER_ALIASES` aliases.
"""

from __future__ import annotations

import struct

from benchmarks import batch
from benchmarks.batch import TS_OFF

PAYLOAD_SIZE = 64
PUBACK = 0x40
MQTT5 = 5
SUBSCRIBER_ALIASES = 1024
TOPIC_ALIAS_MAXIMUM, TOPIC_ALIAS, USER_PROPERTY = 0x22, 0x23, 0x26


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def _properties(block: bytes) -> bytes:
    return _remaining_length(len(block)) + block


def connect(
    client_id: str, keepalive: int = 0, version: int = 4, topic_alias_maximum: int = 0
) -> bytes:
    """CONNECT with a clean session and no credentials."""
    body = _str("MQTT") + bytes((version, 0x02)) + struct.pack(">H", keepalive)
    if version == MQTT5:
        aliases = struct.pack(">BH", TOPIC_ALIAS_MAXIMUM, topic_alias_maximum)
        body += _properties(aliases if topic_alias_maximum else b"")
    body += _str(client_id)
    return b"\x10" + _remaining_length(len(body)) + body


def subscribe(topic_filter: str, qos: int, packet_id: int = 1, version: int = 4) -> bytes:
    body = struct.pack(">H", packet_id) + (_properties(b"") if version == MQTT5 else b"")
    body += _str(topic_filter) + bytes((qos,))
    return b"\x82" + _remaining_length(len(body)) + body


def publish(
    topic: str, qos: int, packet_id: int, payload: bytes, version: int = 4, alias: int = 0
) -> bytes:
    """A PUBLISH; in MQTT 5 with a user property and, if ``alias``, a topic alias."""
    body = _str(topic) + (struct.pack(">H", packet_id) if qos else b"")
    if version == MQTT5:
        block = struct.pack(">BH", TOPIC_ALIAS, alias) if alias else b""
        body += _properties(block + bytes((USER_PROPERTY,)) + _str("bench") + _str("mqtt5"))
    body += payload
    return bytes((0x30 | qos << 1,)) + _remaining_length(len(body)) + body


def alias_setup(topic: str, pub_index: int) -> bytes:
    """The QoS 0 PUBLISH that binds topic alias 1 to ``topic`` on an MQTT 5 connection."""
    return publish(topic, 0, 0, payload(pub_index), MQTT5, alias=1)


def steady_publish(topic: str, qos: int, packet_id: int, payload: bytes, version: int = 4) -> bytes:
    """A publisher's steady-state PUBLISH: in MQTT 5 empty topic and alias 1."""
    if version == MQTT5:
        return publish("", qos, packet_id, payload, MQTT5, alias=1)
    return publish(topic, qos, packet_id, payload)


def payload(pub_index: int) -> bytes:
    """A payload with zero time and sequence, to be stamped before sending."""
    return batch.payload(pub_index, PAYLOAD_SIZE)


def packet_size(topic: str, qos: int, version: int = 4) -> int:
    return len(steady_publish(topic, qos, 1, bytes(PAYLOAD_SIZE), version))


def packet_id_offset(topic: str) -> int:
    """Where a short (under 128 bytes) PUBLISH's packet id starts."""
    return 4 + len(topic.encode())


def pubacks(data: bytes, n: int, size: int, pid_off: int) -> bytes:
    """PUBACKs for the first ``n`` QoS 1 PUBLISHes of ``size`` bytes in ``data``, whose
    packet ids start at ``pid_off``."""
    end = n * size
    out = bytearray(4 * n)
    out[0::4] = bytes((PUBACK,)) * n
    out[1::4] = b"\x02" * n
    out[2::4] = data[pid_off:end:size]
    out[3::4] = data[pid_off + 1 : end : size]
    return bytes(out)


class Batch(batch.Batch):
    """``count`` pre-encoded PUBLISH packets of equal size in one buffer."""

    def __init__(
        self,
        topic: str,
        qos: int,
        count: int,
        pub_index: int,
        first_packet_id: int = 1,
        version: int = 4,
    ) -> None:
        body = payload(pub_index)
        packets = [
            steady_publish(topic, qos, first_packet_id + i, body, version) for i in range(count)
        ]
        super().__init__(packets, payload_off=len(packets[0]) - PAYLOAD_SIZE)


def _packet_at(data: bytes, pos: int) -> tuple[int, int] | None:
    """Where the body of the packet at ``pos`` starts and where the packet ends; None
    unless the packet is complete in ``data``."""
    end = len(data)
    i, rl, shift = pos + 1, 0, 0
    while i < end:
        b = data[i]
        rl |= (b & 0x7F) << shift
        shift += 7
        i += 1
        if b < 0x80:
            return (i, i + rl) if i + rl <= end else None
    return None


class Scanner:
    """Splits a byte stream into PUBLISH packets; builds PUBACKs for QoS 1.

    Fast path: once the stream has settled into packets of one size, first byte and topic
    length (learned from two in a row), a chunk that is a run of such packets (checked on
    every packet with strided slices) is counted and acked in C.  Anything else falls back
    to a per-packet walk that accepts any packet and learns the shape again.
    """

    def __init__(self) -> None:
        self.size = 0
        self.pid_off = 0
        self.head = b""  # first byte, remaining length, topic length: the steady shape
        self.pending = b""

    def feed(self, data: bytes, want_ts: bool) -> tuple[int, bytes, list[int]]:
        """Consume ``data``; return (PUBLISH count, PUBACK bytes to send, timestamps).

        With ``want_ts`` every packet's send time is returned, else only the last one's.
        """
        if self.pending:
            data = self.pending + data
        size = self.size
        n = len(data) // size if size else 0
        end = n * size
        if n and all(data[i:end:size].count(b) == n for i, b in enumerate(self.head)):
            self.pending = data[end:]
            qos = self.head[0] & 0x06
            acks = pubacks(data, n, size, self.pid_off) if qos else b""
            ts_off = size - PAYLOAD_SIZE + TS_OFF
            offs = range(ts_off, end, size) if want_ts else (end - size + ts_off,)
            return n, acks, [int.from_bytes(data[o : o + 8], "big") for o in offs]
        return self._walk(data, want_ts)

    def _walk(self, data: bytes, want_ts: bool) -> tuple[int, bytes, list[int]]:
        pos, count = 0, 0
        acks = bytearray()
        stamps: list[int] = []
        heads: list[bytes] = []
        while (bounds := _packet_at(data, pos)) is not None:
            i, packet_end = bounds
            rl = packet_end - i
            b0 = data[pos]
            if b0 >> 4 == 3:
                count += 1
                heads.append(data[pos : pos + 4] if i == pos + 2 else b"")
                pid = i + 2 + (data[i] << 8 | data[i + 1])
                if b0 & 0x06:
                    acks += bytes((PUBACK, 2)) + data[pid : pid + 2]
                if rl >= PAYLOAD_SIZE:
                    ts = i + rl - PAYLOAD_SIZE + TS_OFF
                    stamps.append(int.from_bytes(data[ts : ts + 8], "big"))
            pos = packet_end
        self.pending = data[pos:]
        if len(heads) >= 2 and heads[-1] and heads[-1] == heads[-2]:
            self.head = heads[-1]
            self.size = 2 + self.head[1]
            self.pid_off = 4 + int.from_bytes(self.head[2:4], "big")
        return count, bytes(acks), stamps if want_ts else stamps[-1:]


class AckCounter:
    """Counts the PUBACKs in a publisher's byte stream.

    Fast path: a chunk of short (4-byte) PUBACKs only, checked with strided slices.  Any
    other shape (an MQTT 5 PUBACK with a reason code, a split packet) is walked packet by
    packet.
    """

    def __init__(self) -> None:
        self.pending = b""
        self.count = 0

    def feed(self, data: bytes) -> int:
        """Consume ``data``; return the total PUBACKs seen so far."""
        if self.pending:
            data = self.pending + data
        n = len(data) // 4
        if len(data) == 4 * n and data[0::4].count(PUBACK) == n and data[1::4].count(2) == n:
            self.pending = b""
            self.count += n
            return self.count
        pos = 0
        while (bounds := _packet_at(data, pos)) is not None:
            if data[pos] == PUBACK:
                self.count += 1
            elif data[pos] >> 4 != 0xD:  # anything but a PINGRESP is unexpected
                raise ConnectionError(f"unexpected packet among PUBACKs: {data[pos:][:16].hex()}")
            pos = bounds[1]
        self.pending = data[pos:]
        return self.count
