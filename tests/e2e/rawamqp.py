"""A raw AMQP 0-9-1 client for the e2e tests: a socket and a hand-written frame codec.

Independent of the broker's codec (pamqp) on purpose, and able to send what no client
library will: broken frames, unknown methods, field tables with unknown type tags.
Only the methods the tests send or read are here.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
METHOD, HEADER, BODY, HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE
TIMEOUT = 5.0

# (class id, method id) of the methods used here
CONNECTION_START = (10, 10)
CONNECTION_START_OK = (10, 11)
CONNECTION_TUNE = (10, 30)
CONNECTION_TUNE_OK = (10, 31)
CONNECTION_OPEN = (10, 40)
CONNECTION_OPEN_OK = (10, 41)
CONNECTION_CLOSE = (10, 50)
CONNECTION_CLOSE_OK = (10, 51)
CHANNEL_OPEN = (20, 10)
CHANNEL_OPEN_OK = (20, 11)
QUEUE_DECLARE = (50, 10)
QUEUE_DECLARE_OK = (50, 11)
BASIC_CONSUME = (60, 20)
BASIC_CONSUME_OK = (60, 21)
BASIC_PUBLISH = (60, 40)
BASIC_DELIVER = (60, 60)
BASIC_GET = (60, 70)
BASIC_GET_OK = (60, 71)

HEADERS_FLAG = 0x2000  # the content header's property flag for `headers`


# -- encoding -----------------------------------------------------------------------------


def shortstr(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return bytes([len(data)]) + data


def longstr(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("!I", len(data)) + data


def table_items(items: dict[str, str]) -> bytes:
    """Field-value pairs of long strings, without the table's length (which is also
    AMQPLAIN's response); all the tables the client itself needs."""
    return b"".join(shortstr(name) + b"S" + longstr(value) for name, value in items.items())


def table(items: dict[str, str]) -> bytes:
    return longstr(table_items(items))


def frame(kind: int, channel: int, payload: bytes) -> bytes:
    return struct.pack("!BHI", kind, channel, len(payload)) + payload + bytes([FRAME_END])


def method(channel: int, ids: tuple[int, int], arguments: bytes = b"") -> bytes:
    return frame(METHOD, channel, struct.pack("!HH", *ids) + arguments)


def content_header(channel: int, body_size: int, flags: int = 0, properties: bytes = b"") -> bytes:
    """A basic content header; `properties` are the encoded ones `flags` announce."""
    return frame(HEADER, channel, struct.pack("!HHQH", 60, 0, body_size, flags) + properties)


def body(channel: int, data: bytes) -> bytes:
    return frame(BODY, channel, data)


def start_ok(mechanism: str, response: bytes) -> bytes:
    args = table({"product": "rawamqp"}) + shortstr(mechanism) + longstr(response)
    return method(0, CONNECTION_START_OK, args + shortstr("en_US"))


def plain_response(username: str, password: str) -> bytes:
    return f"\0{username}\0{password}".encode()


def amqplain_response(username: str, password: str) -> bytes:
    return table_items({"LOGIN": username, "PASSWORD": password})


def tune_ok(channel_max: int, frame_max: int, heartbeat: int) -> bytes:
    return method(0, CONNECTION_TUNE_OK, struct.pack("!HIH", channel_max, frame_max, heartbeat))


def connection_open(vhost: str = "/") -> bytes:
    return method(0, CONNECTION_OPEN, shortstr(vhost) + shortstr("") + b"\0")


def channel_open(channel: int) -> bytes:
    return method(channel, CHANNEL_OPEN, shortstr(""))


def queue_declare(channel: int, name: str, arguments: bytes | None = None) -> bytes:
    """queue.declare of an exclusive queue; `arguments` is an encoded table (empty one if
    None)."""
    exclusive = 0x04
    args = table({}) if arguments is None else arguments
    return method(channel, QUEUE_DECLARE, b"\0\0" + shortstr(name) + bytes([exclusive]) + args)


def basic_publish(channel: int, routing_key: str) -> bytes:
    """basic.publish to the default exchange."""
    return method(channel, BASIC_PUBLISH, b"\0\0" + shortstr("") + shortstr(routing_key) + b"\0")


def basic_get(channel: int, queue: str) -> bytes:
    no_ack = 0x01
    return method(channel, BASIC_GET, b"\0\0" + shortstr(queue) + bytes([no_ack]))


def basic_consume(channel: int, queue: str, tag: str = "raw") -> bytes:
    no_ack = 0x02
    args = b"\0\0" + shortstr(queue) + shortstr(tag) + bytes([no_ack]) + table({})
    return method(channel, BASIC_CONSUME, args)


# -- decoding -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    kind: int
    channel: int
    payload: bytes

    @property
    def method_ids(self) -> tuple[int, int] | None:
        if self.kind != METHOD:
            return None
        return struct.unpack_from("!HH", self.payload)

    @property
    def arguments(self) -> bytes:
        return self.payload[4:]


@dataclass(frozen=True)
class Tune:
    channel_max: int
    frame_max: int
    heartbeat: int


@dataclass(frozen=True)
class Close:
    """connection.close or channel.close: the reply code and what failed."""

    reply_code: int
    reply_text: str
    class_id: int
    method_id: int


def parse_tune(f: Frame) -> Tune:
    return Tune(*struct.unpack_from("!HIH", f.arguments))


def parse_content_header(f: Frame) -> tuple[int, int, bytes]:
    """A content header's body size, property flags and encoded properties."""
    assert f.kind == HEADER, f
    _class_id, _weight, size, flags = struct.unpack_from("!HHQH", f.payload)
    return size, flags, f.payload[14:]


def parse_close(f: Frame) -> Close:
    args = f.arguments
    (code,) = struct.unpack_from("!H", args)
    text_len = args[2]
    text = args[3 : 3 + text_len].decode()
    class_id, method_id = struct.unpack_from("!HH", args, 3 + text_len)
    return Close(code, text, class_id, method_id)


# -- the client ---------------------------------------------------------------------------


class RawAmqp:
    """A socket to the AMQP listener that reads whole frames."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self._buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self, n: int, deadline: float) -> bytes:
        while len(self._buf) < n:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"nothing from the broker within {TIMEOUT}s") from None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"connection closed with {self._buf!r} unread")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def recv(self, timeout: float = TIMEOUT) -> Frame:
        deadline = time.monotonic() + timeout
        kind, channel, size = struct.unpack("!BHI", self._read(7, deadline))
        payload = self._read(size, deadline)
        end = self._read(1, deadline)
        assert end == bytes([FRAME_END]), f"bad frame end {end!r} from the broker"
        return Frame(kind, channel, payload)

    def expect(self, ids: tuple[int, int], timeout: float = TIMEOUT) -> Frame:
        """The next frame that is not a heartbeat; it must be the method `ids`."""
        f = self.recv(timeout)
        while f.kind == HEARTBEAT:
            f = self.recv(timeout)
        assert f.method_ids == ids, f"expected method {ids}, got {f}"
        return f

    def handshake(
        self,
        *,
        username: str = "alice",
        password: str = "secret",
        mechanism: str = "PLAIN",
        channel_max: int | None = None,
        frame_max: int | None = None,
        heartbeat: int = 0,
    ) -> Tune:
        """Protocol header to connection.open-ok; returns the broker's connection.tune.
        channel_max and frame_max default to what the broker proposes."""
        self.send(PROTOCOL_HEADER)
        self.expect(CONNECTION_START)
        if mechanism == "AMQPLAIN":
            response = amqplain_response(username, password)
        else:
            response = plain_response(username, password)
        self.send(start_ok(mechanism, response))
        tune = parse_tune(self.expect(CONNECTION_TUNE))
        self.send(
            tune_ok(
                tune.channel_max if channel_max is None else channel_max,
                tune.frame_max if frame_max is None else frame_max,
                heartbeat,
            )
        )
        self.send(connection_open())
        self.expect(CONNECTION_OPEN_OK)
        return tune

    def open_channel(self, channel: int = 1) -> None:
        self.send(channel_open(channel))
        self.expect(CHANNEL_OPEN_OK)

    def expect_connection_close(self, timeout: float = TIMEOUT) -> Close:
        """Read up to the broker's connection.close, answer close-ok and see the socket
        close; returns the close."""
        deadline = time.monotonic() + timeout
        while (f := self.recv(max(deadline - time.monotonic(), 0.01))).method_ids != (
            CONNECTION_CLOSE
        ):
            pass
        close = parse_close(f)
        try:
            self.send(method(0, CONNECTION_CLOSE_OK))
        except (BrokenPipeError, ConnectionResetError):
            return close  # it did not wait for the close-ok: allowed
        self.wait_closed(timeout)
        return close

    def wait_closed(self, timeout: float = TIMEOUT) -> bytes:
        """Read until the broker closes the socket; what it sent meanwhile."""
        deadline = time.monotonic() + timeout
        seen = b""
        while True:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"connection still open after {timeout}s") from None
            except (ConnectionResetError, BrokenPipeError):
                return seen
            if not chunk:
                return seen
            seen += chunk

    def close(self) -> None:
        self.sock.close()
