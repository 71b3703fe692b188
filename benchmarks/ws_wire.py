"""Minimal RFC 6455 client framing for the WebSocket load generator, written by hand.

A WebSocket library costs more CPU per message than the brokers under test, so the load
generator speaks the protocol itself: the upgrade request (:func:`handshake`), masked
client frames (:func:`frame`), runs of pre-encoded, pre-masked frames stamped column-wise
like :mod:`benchmarks.batch` (:class:`FrameBatch`), and a reader of server frames
(:class:`FrameCounter`) that counts deliveries in whole reads with strided slices once
they settle into one shape.  No extension (permessage-deflate) is offered.

Payload stamps: binary messages carry :mod:`benchmarks.batch`'s layout; text messages
(the native JSON subprotocol, whose payloads are strings) carry the same fields as
lowercase hex: send time (16 digits), sequence (12 + 4 digits), publisher index (8).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from collections.abc import Callable

from benchmarks import batch

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
FIN = 0x80
HEADER_LIMIT = 16 * 1024
TEXT_PAYLOAD_SIZE = 64
TEXT_TS, TEXT_SEQ, TEXT_INDEX = 0, 16, 32  # offsets of the hex fields in a text payload


class HandshakeRefused(ConnectionError):
    """The server answered the upgrade with something other than 101 and our subprotocol."""


def handshake(sock: socket.socket, path: str, subprotocol: str) -> bytes:
    """Upgrade ``sock`` to a WebSocket on ``path`` with ``subprotocol``; return the bytes
    read past the response headers (the first server frames, if any)."""
    key = base64.b64encode(os.urandom(16))
    host, port = sock.getpeername()[:2]
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
    )
    sock.sendall(request.encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk or len(buf) > HEADER_LIMIT:
            raise HandshakeRefused(f"{path}: no upgrade response: {buf[:200]!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
    if status.split()[1:2] != ["101"]:
        raise HandshakeRefused(f"{path}: {status}")
    if headers.get("sec-websocket-accept") != accept:
        raise HandshakeRefused(f"{path}: wrong Sec-WebSocket-Accept")
    if headers.get("sec-websocket-protocol") != subprotocol:
        raise HandshakeRefused(f"{path}: subprotocol {subprotocol} not chosen")
    return rest


def mask(data: bytes, key: bytes) -> bytes:
    """``data`` XOR the repeated 4-byte ``key`` (RFC 6455 5.3), in C via big integers."""
    n = len(data)
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(keys, "little")).to_bytes(n, "little")


def _length(n: int) -> bytes:
    if n < 126:
        return bytes((0x80 | n,))
    if n < 1 << 16:
        return bytes((0x80 | 126,)) + n.to_bytes(2, "big")
    return bytes((0x80 | 127,)) + n.to_bytes(8, "big")


def frame(payload: bytes, opcode: int = BINARY, key: bytes | None = None) -> bytes:
    """One final, masked client frame."""
    key = os.urandom(4) if key is None else key
    return bytes((FIN | opcode,)) + _length(len(payload)) + key + mask(payload, key)


def text_payload(pub_index: int) -> bytes:
    """A text payload with zero time and sequence, to be stamped before sending."""
    fields = b"0" * TEXT_INDEX + b"%08x" % pub_index
    return fields + b"x" * (TEXT_PAYLOAD_SIZE - len(fields))


class FrameBatch:
    """``count`` masked frames of one pre-encoded message in one buffer, every frame with
    the same key, so a byte column of the batch has one mask byte; the payload at
    ``payload_off`` in the message is stamped with that byte XORed in."""

    def __init__(
        self, message: bytes, payload_off: int, count: int, opcode: int, pub_index: int = 0
    ) -> None:
        self.text = opcode == TEXT
        self.key = os.urandom(4)
        one = frame(message, opcode, self.key)
        self.header = len(one) - len(message)
        self.size, self.count = len(one), count
        self.payload_off = self.header + payload_off
        self.buf = bytearray(one * count)
        for i in range(count):
            seq_low = (b"%04x" % (i & 0xFFFF)) if self.text else (i & 0xFFFF).to_bytes(2, "big")
            at = (TEXT_SEQ + 12) if self.text else (batch.SEQ_OFF + 6)
            self._write(i * self.size + self.payload_off + at, seq_low)

    def stamp(self, ts: int, batch_no: int) -> bytearray:
        """Write send time ``ts`` and sequence ``batch_no << 16 | index`` into every frame."""
        if self.text:
            self._column(self.payload_off + TEXT_TS, b"%016x" % ts)
            self._column(self.payload_off + TEXT_SEQ, b"%012x" % batch_no)
        else:
            self._column(self.payload_off + batch.TS_OFF, ts.to_bytes(8, "big"))
            self._column(self.payload_off + batch.SEQ_OFF, batch_no.to_bytes(6, "big"))
        return self.buf

    def _key_at(self, off: int) -> int:
        return self.key[(off - self.header) % 4]

    def _write(self, at: int, value: bytes) -> None:
        off = at % self.size
        self.buf[at : at + len(value)] = bytes(
            b ^ self._key_at(off + j) for j, b in enumerate(value)
        )

    def _column(self, off: int, value: bytes) -> None:
        for j, byte in enumerate(value):
            self.buf[off + j :: self.size] = bytes((byte ^ self._key_at(off + j),)) * self.count


def binary_stamp(data: bytes, off: int) -> int:
    return int.from_bytes(data[off : off + 8], "big")


def text_stamp(data: bytes, off: int) -> int:
    return int(data[off : off + 16], 16)


#: A message's deliveries: (count, their send times, where the send time of its only
#: delivery starts if the message is exactly one delivery, else None).
Decoded = tuple[int, list[int], int | None]


class FrameCounter:
    """Splits the server's byte stream into frames and counts deliveries in them.

    ``decode`` reads one data message; ``stamp_at`` reads a send time at an offset.
    Fast path: once two frames in a row were single deliveries of one size and with the
    same first bytes (frame header and the start of the message), a read made of such
    frames is checked with one strided slice per signature byte and counted in C.
    Anything else is walked frame by frame.  Pings are answered (``replies`` collects the
    pongs to send); a close frame ends the run with its code.
    """

    SIGNATURE = 8

    def __init__(
        self,
        decode: Callable[[bytes], Decoded],
        stamp_at: Callable[[bytes, int], int],
        pending: bytes = b"",
    ) -> None:
        self.decode = decode
        self.stamp_at = stamp_at
        self.pending = pending
        self.size = 0
        self.ts_off = 0
        self.signature: list[tuple[int, int]] = []
        self.replies = bytearray()
        self._last: tuple[int, bytes] | None = None  # size and first bytes of a single delivery
        self._fragments: list[bytes] = []

    def feed(self, data: bytes) -> tuple[int, list[int]]:
        """Consume ``data``; return the deliveries in it and the send time of the last."""
        if self.pending:
            data = self.pending + data
        size = self.size
        n = len(data) // size if size else 0
        end = n * size
        if n and all(data[i:end:size].count(b) == n for i, b in self.signature):
            self.pending = data[end:]
            return n, [self.stamp_at(data, end - size + self.ts_off)]
        return self._walk(data)

    def _walk(self, data: bytes) -> tuple[int, list[int]]:
        pos = count = 0
        stamps: list[int] = []
        while (bounds := _frame_at(data, pos)) is not None:
            start, end = bounds
            opcode = data[pos] & 0x0F
            payload = data[start:end]
            if opcode in (TEXT, BINARY, 0):
                self._fragments.append(payload)
                if data[pos] & FIN:
                    message = b"".join(self._fragments)
                    self._fragments.clear()
                    n, got, ts_off = self.decode(message)
                    count += n
                    stamps += got
                    single = opcode != 0  # the whole message was this frame
                    self._learn(data[pos:end], start - pos, ts_off if single else None)
            elif opcode == PING:
                self.replies += frame(payload, PONG)
            elif opcode == CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                raise ConnectionError(f"server closed the WebSocket: {code} {payload[2:]!r}")
            pos = end
        self.pending = data[pos:]
        return count, stamps[-1:]

    def _learn(self, whole: bytes, header: int, ts_off: int | None) -> None:
        if ts_off is None:
            self._last = None
            return
        shape = (len(whole), whole[: self.SIGNATURE])
        if shape == self._last:
            self.size, self.ts_off = len(whole), header + ts_off
            self.signature = list(enumerate(whole[: self.SIGNATURE]))
        self._last = shape


def _frame_at(data: bytes, pos: int) -> tuple[int, int] | None:
    """Where the payload of the unmasked server frame at ``pos`` starts and where the
    frame ends; None unless the frame is complete in ``data``."""
    if len(data) < pos + 2:
        return None
    if data[pos + 1] & 0x80:
        raise ConnectionError("server sent a masked frame")
    n, start = data[pos + 1], pos + 2
    if n >= 126:
        width = 2 if n == 126 else 8
        if len(data) < start + width:
            return None
        n, start = int.from_bytes(data[start : start + width], "big"), start + width
    return (start, start + n) if start + n <= len(data) else None


def read_message(sock: socket.socket, pending: bytes) -> tuple[bytes, bytes]:
    """Block for the next data message (pings answered, fragments joined); return it and
    the bytes read past it."""
    parts: list[bytes] = []
    data = pending
    pos = 0
    while True:
        bounds = _frame_at(data, pos)
        if bounds is None:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            data += chunk
            continue
        start, end = bounds
        opcode = data[pos] & 0x0F
        if opcode == PING:
            sock.sendall(frame(data[start:end], PONG))
        elif opcode == CLOSE:
            raise ConnectionError(f"server closed the WebSocket: {data[start:end]!r}")
        elif opcode in (TEXT, BINARY, 0):
            parts.append(data[start:end])
            if data[pos] & FIN:
                return b"".join(parts), data[end:]
        pos = end
