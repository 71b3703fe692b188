"""A tiny hand-written MQTT 3.1.1 client for tests that need control over every byte.

Independent of the broker's own codec on purpose: it encodes only the packets the tests send
and decodes only what they need to look at.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = range(8, 15)


class ConnectionClosed(Exception):
    """The broker closed (or reset) the connection."""


class Will(NamedTuple):
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


def encode_length(n: int) -> bytes:
    """Encode a remaining length as MQTT's variable byte integer."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(value: str | bytes) -> bytes:
    """A length-prefixed string; bytes are sent as they are (e.g. invalid UTF-8)."""
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(raw)) + raw


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    return bytes([ptype << 4 | flags]) + encode_length(len(body)) + body


def connect(
    client_id: str,
    *,
    clean: bool = True,
    keepalive: int = 60,
    will: Will | None = None,
    username: str | None = None,
    password: str | None = None,
    level: int = 4,
) -> bytes:
    flags = 0x02 if clean else 0
    payload = string(client_id)
    if will is not None:
        flags |= 0x04 | will.qos << 3 | (0x20 if will.retain else 0)
        payload += string(will.topic) + string(will.payload)
    if username is not None:
        flags |= 0x80
        payload += string(username)
    if password is not None:
        flags |= 0x40
        payload += string(password)
    header = string("MQTT") + bytes([level, flags]) + struct.pack("!H", keepalive)
    return packet(CONNECT, 0, header + payload)


def publish(
    topic: str | bytes,
    payload: bytes,
    *,
    qos: int = 0,
    packet_id: int = 0,
    dup: bool = False,
    retain: bool = False,
) -> bytes:
    flags = (0x08 if dup else 0) | qos << 1 | (0x01 if retain else 0)
    body = string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return packet(PUBLISH, flags, body)


def ack(ptype: int, packet_id: int) -> bytes:
    """PUBACK, PUBREC, PUBREL (with its mandatory flags 0b0010) or PUBCOMP."""
    return packet(ptype, 0x02 if ptype == PUBREL else 0, struct.pack("!H", packet_id))


def subscribe(packet_id: int, filters: list[tuple[str, int]], *, flags: int = 0x02) -> bytes:
    body = struct.pack("!H", packet_id)
    body += b"".join(string(f) + bytes([qos]) for f, qos in filters)
    return packet(SUBSCRIBE, flags, body)


def disconnect() -> bytes:
    return packet(DISCONNECT, 0, b"")


@dataclass(frozen=True)
class Packet:
    type: int
    flags: int
    body: bytes

    @property
    def packet_id(self) -> int:
        """The packet id of an ack-style packet (PUBACK ... SUBACK)."""
        return struct.unpack_from("!H", self.body)[0]


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    dup: bool
    retain: bool
    packet_id: int


def parse_publish(p: Packet) -> Publish:
    assert p.type == PUBLISH, f"expected PUBLISH, got packet type {p.type}"
    (tlen,) = struct.unpack_from("!H", p.body)
    topic = p.body[2 : 2 + tlen].decode()
    qos = (p.flags >> 1) & 3
    rest = p.body[2 + tlen :]
    packet_id = struct.unpack_from("!H", rest)[0] if qos else 0
    return Publish(
        topic, rest[2 if qos else 0 :], qos, bool(p.flags & 8), bool(p.flags & 1), packet_id
    )


class RawClient:
    """A blocking MQTT connection on a plain socket; every read has a timeout."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self._buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read_exact(self, n: int, deadline: float) -> bytes:
        while len(self._buf) < n:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError) as exc:
                raise ConnectionClosed(str(exc)) from exc
            except TimeoutError:
                raise TimeoutError("no packet from the broker in time") from None
            if not chunk:
                raise ConnectionClosed("EOF")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def recv(self, timeout: float = 5.0) -> Packet:
        """The next packet; TimeoutError if none arrives, ConnectionClosed on EOF/reset."""
        deadline = time.monotonic() + timeout
        first = self._read_exact(1, deadline)[0]
        length, shift = 0, 0
        while True:
            byte = self._read_exact(1, deadline)[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return Packet(first >> 4, first & 0x0F, self._read_exact(length, deadline))

    def expect(self, ptype: int, timeout: float = 5.0) -> Packet:
        p = self.recv(timeout)
        assert p.type == ptype, f"expected packet type {ptype}, got {p.type} ({p.body!r})"
        return p

    def connect(self, client_id: str, **kwargs: Any) -> tuple[bool, int]:
        """Send CONNECT (see connect()) and return (session present, return code)."""
        self.send(connect(client_id, **kwargs))
        body = self.expect(CONNACK).body
        return bool(body[0] & 1), body[1]

    def subscribe(self, filters: list[tuple[str, int]], packet_id: int = 1) -> list[int]:
        """Subscribe and return the SUBACK's return codes."""
        self.send(subscribe(packet_id, filters))
        p = self.expect(SUBACK)
        assert p.packet_id == packet_id
        return list(p.body[2:])

    def wait_closed(self, timeout: float = 5.0) -> list[Packet]:
        """Read until the broker closes the connection; return the packets seen before."""
        seen: list[Packet] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                seen.append(self.recv(max(deadline - time.monotonic(), 0.001)))
            except ConnectionClosed:
                return seen
            except TimeoutError:
                raise AssertionError(
                    f"connection still open after {timeout}s; got {seen}"
                ) from None

    def send_until_closed(self, data: bytes) -> None:
        """Send data the broker may refuse midway (it may close before reading it all)."""
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            self.send(data)

    def close(self) -> None:
        """Close the socket without DISCONNECT (an abrupt close, as far as MQTT is concerned)."""
        self.sock.close()
