"""Minimal MQTT 3.1.1 encoding and a fast PUBLISH scanner for the load generator.

Every benchmark message has a 64-byte payload: send time (``time.monotonic_ns``, 8 bytes),
sequence number (8 bytes), publisher index (4 bytes), padding.  Batches of packets are
encoded once; per batch only the time and sequence bytes are rewritten, column-wise with
strided slice assignment, so no Python code runs per message.
"""

from __future__ import annotations

import struct

PAYLOAD_SIZE = 64
TS_OFF = 0  # payload offset of the send timestamp
SEQ_OFF = 8  # payload offset of the sequence number
PUBACK = 0x40


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


def connect(client_id: str, keepalive: int = 0) -> bytes:
    """CONNECT with a clean session and no credentials."""
    body = _str("MQTT") + bytes((4, 0x02)) + struct.pack(">H", keepalive) + _str(client_id)
    return b"\x10" + _remaining_length(len(body)) + body


def subscribe(topic_filter: str, qos: int, packet_id: int = 1) -> bytes:
    body = struct.pack(">H", packet_id) + _str(topic_filter) + bytes((qos,))
    return b"\x82" + _remaining_length(len(body)) + body


def publish(topic: str, qos: int, packet_id: int, payload: bytes) -> bytes:
    body = _str(topic) + (struct.pack(">H", packet_id) if qos else b"") + payload
    return bytes((0x30 | qos << 1,)) + _remaining_length(len(body)) + body


def payload(pub_index: int) -> bytes:
    """A payload with zero time and sequence, to be stamped before sending."""
    return bytes(16) + struct.pack(">I", pub_index) + bytes(PAYLOAD_SIZE - 20)


def packet_size(topic: str, qos: int) -> int:
    return len(publish(topic, qos, 1, bytes(PAYLOAD_SIZE)))


def pubacks(data: bytes, n: int, size: int) -> bytes:
    """PUBACKs for the first ``n`` QoS 1 PUBLISHes of ``size`` bytes in ``data``."""
    pid_off = size - PAYLOAD_SIZE - 2
    end = n * size
    out = bytearray(4 * n)
    out[0::4] = bytes((PUBACK,)) * n
    out[1::4] = b"\x02" * n
    out[2::4] = data[pid_off:end:size]
    out[3::4] = data[pid_off + 1 : end : size]
    return bytes(out)


class Batch:
    """``count`` pre-encoded PUBLISH packets of equal size in one buffer."""

    def __init__(
        self, topic: str, qos: int, count: int, pub_index: int, first_packet_id: int = 1
    ) -> None:
        self.count = count
        self.size = packet_size(topic, qos)
        body = payload(pub_index)
        self.buf = bytearray(
            b"".join(publish(topic, qos, first_packet_id + i, body) for i in range(count))
        )
        self.payload_off = self.size - PAYLOAD_SIZE
        for i in range(count):  # low 16 bits of each sequence number: the index
            off = i * self.size + self.payload_off + SEQ_OFF + 6
            self.buf[off : off + 2] = (i & 0xFFFF).to_bytes(2, "big")

    def stamp(self, ts: int, batch_no: int) -> bytearray:
        """Write send time ``ts`` and sequence ``batch_no << 16 | index`` into every packet."""
        self._column(self.payload_off + TS_OFF, ts.to_bytes(8, "big"))
        self._column(self.payload_off + SEQ_OFF, batch_no.to_bytes(6, "big"))
        return self.buf

    def _column(self, off: int, value: bytes) -> None:
        for j, byte in enumerate(value):
            self.buf[off + j :: self.size] = bytes((byte,)) * self.count


class Scanner:
    """Splits a byte stream into PUBLISH packets; builds PUBACKs for QoS 1.

    Fast path: when the chunk is a run of packets of the expected size and first byte
    (checked on every packet with strided slices), count and acks are computed in C.
    Anything else falls back to a per-packet walk that accepts any packet.
    """

    def __init__(self, expected_size: int, qos: int) -> None:
        self.size = expected_size
        self.first = 0x30 | qos << 1
        self.rl_byte = expected_size - 2
        self.ts_off = expected_size - PAYLOAD_SIZE + TS_OFF
        self.pending = b""

    def feed(self, data: bytes, want_ts: bool) -> tuple[int, bytes, list[int]]:
        """Consume ``data``; return (PUBLISH count, PUBACK bytes to send, timestamps).

        With ``want_ts`` every packet's send time is returned, else only the last one's.
        """
        if self.pending:
            data = self.pending + data
        size = self.size
        n = len(data) // size
        end = n * size
        if (
            n
            and self.rl_byte < 128
            and data[0:end:size].count(self.first) == n
            and data[1:end:size].count(self.rl_byte) == n
        ):
            self.pending = data[end:]
            acks = pubacks(data, n, size) if self.first & 0x06 else b""
            offs = range(self.ts_off, end, size) if want_ts else (end - size + self.ts_off,)
            return n, acks, [int.from_bytes(data[o : o + 8], "big") for o in offs]
        return self._walk(data, want_ts)

    def _walk(self, data: bytes, want_ts: bool) -> tuple[int, bytes, list[int]]:
        pos, end, count = 0, len(data), 0
        acks = bytearray()
        stamps: list[int] = []
        while pos + 2 <= end:
            i, rl, shift = pos + 1, 0, 0
            while i < end:
                b = data[i]
                rl |= (b & 0x7F) << shift
                shift += 7
                i += 1
                if b < 0x80:
                    break
            else:
                break
            if i + rl > end:
                break
            b0 = data[pos]
            if b0 >> 4 == 3:
                count += 1
                qos = (b0 >> 1) & 3
                body = i + 2 + (data[i] << 8 | data[i + 1])
                if qos:
                    acks += bytes((PUBACK, 2)) + data[body : body + 2]
                    body += 2
                if rl >= body - i + 8:
                    stamps.append(int.from_bytes(data[body : body + 8], "big"))
            pos = i + rl
        self.pending = data[pos:]
        return count, bytes(acks), stamps if want_ts else stamps[-1:]
