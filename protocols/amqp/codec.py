"""AMQP 0-9-1 framing, sans-I/O: bytes in, frames out; frames in, bytes out.

pamqp is the codec for methods and content properties.  The two frames every message
crosses, basic.publish on the way in and basic.deliver on the way out, and content
bodies have hand-written paths (tested against pamqp): they are most of the traffic.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pamqp import commands, decode, encode
from pamqp.base import Frame as Method
from pamqp.exceptions import UnmarshalingException

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE
#: Bytes a frame adds around its payload (type, channel, size; end octet).
FRAME_OVERHEAD = 8
#: The smallest frame_max a peer may set (AMQP 0-9-1 4.2.1).
FRAME_MIN_SIZE = 4096
HEARTBEAT_FRAME = bytes((FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END))

# Reply codes (AMQP 0-9-1 1.8.3).
REPLY_SUCCESS = 200
CONTENT_TOO_LARGE = 311
NO_ROUTE = 312
NO_CONSUMERS = 313
CONNECTION_FORCED = 320
INVALID_PATH = 402
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
RESOURCE_ERROR = 506
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541

REPLY_NAMES = {
    CONTENT_TOO_LARGE: "CONTENT_TOO_LARGE",
    NO_ROUTE: "NO_ROUTE",
    NO_CONSUMERS: "NO_CONSUMERS",
    CONNECTION_FORCED: "CONNECTION_FORCED",
    INVALID_PATH: "INVALID_PATH",
    ACCESS_REFUSED: "ACCESS_REFUSED",
    NOT_FOUND: "NOT_FOUND",
    RESOURCE_LOCKED: "RESOURCE_LOCKED",
    PRECONDITION_FAILED: "PRECONDITION_FAILED",
    FRAME_ERROR: "FRAME_ERROR",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    COMMAND_INVALID: "COMMAND_INVALID",
    CHANNEL_ERROR: "CHANNEL_ERROR",
    UNEXPECTED_FRAME: "UNEXPECTED_FRAME",
    RESOURCE_ERROR: "RESOURCE_ERROR",
    NOT_ALLOWED: "NOT_ALLOWED",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    INTERNAL_ERROR: "INTERNAL_ERROR",
}

_HEAD = struct.Struct(">BHI")
_METHOD_ID = struct.Struct(">I")
_DELIVER_HEAD = struct.Struct(">BHIHH")
_LONGLONG = struct.Struct(">Q")
_OCTETS = [bytes((i,)) for i in range(256)]
_CONTENT_HEAD = struct.Struct(">HHQ")
_HEADER_FRAME = struct.Struct(">BHIHHQ")
#: Distinct basic.publish argument blocks a decoder remembers.
ARGS_CACHE_SIZE = 256
_PUBLISH = commands.Basic.Publish.index
_PUBLISH_ID = _PUBLISH.to_bytes(4, "big")
_ACK = commands.Basic.Ack.index


class AMQPError(Exception):
    """A connection exception: the server sends connection.close with ``code``."""

    def __init__(self, code: int, text: str, method: int = 0) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.method = method  # pamqp index (class << 16 | method) of the offending method

    def close_method(self, close: type) -> Any:
        """connection.close or channel.close for this error, its text prefixed with the
        reply code's name as RabbitMQ does (clients show it)."""
        name = REPLY_NAMES.get(self.code, "")
        text = self.text if not name or self.text.startswith(name) else f"{name} - {self.text}"
        return close(self.code, text[:255], self.method >> 16, self.method & 0xFFFF)


class ChannelError(AMQPError):
    """A channel exception: the server closes only that channel."""


@dataclass(slots=True)
class Publish:
    """basic.publish, decoded on the fast path."""

    exchange: str
    routing_key: str
    mandatory: bool
    immediate: bool

    index = _PUBLISH


@dataclass(slots=True)
class WholePublish:
    """basic.publish with its content header and its body in one frame (or none), all in
    one read: the common case, decoded at once."""

    exchange: str
    routing_key: str
    mandatory: bool
    immediate: bool
    properties: bytes  # the content header's property block
    body: bytes

    index = _PUBLISH


@dataclass(slots=True)
class Ack:
    """basic.ack from a client, decoded on the fast path."""

    delivery_tag: int
    multiple: bool

    index = _ACK


@dataclass(slots=True)
class ContentHeader:
    """A content header frame: the body size and the raw property block (flags and
    values), mapped to core properties by the caller (who caches repeats)."""

    body_size: int
    properties: bytes


Frame = tuple[int, int, Any]  # (frame type, channel, payload object)


class FrameDecoder:
    """Splits a connection's byte stream into frames.

    The stream starts with the protocol header; ``feed`` returns ``(FRAME_HEARTBEAT, 0,
    None)``-style tuples: method frames carry a pamqp method (or ``Publish``/``Ack``),
    header frames a ``ContentHeader``, body frames the payload bytes.  Malformed input
    raises ``AMQPError`` with the reply code the server closes the connection with.
    """

    def __init__(self, frame_max: int) -> None:
        self.frame_max = frame_max
        self.header_seen = False
        self._buf = b""
        self._publish_args: dict[bytes, Publish] = {}

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf + data if self._buf else data
        frames: list[Frame] = []
        pos = 0
        if not self.header_seen:
            if len(buf) < len(PROTOCOL_HEADER):
                if not PROTOCOL_HEADER.startswith(buf):
                    raise BadProtocolHeader
                self._buf = buf
                return frames
            if buf[:8] != PROTOCOL_HEADER:
                raise BadProtocolHeader
            self.header_seen = True
            pos = 8
        end = len(buf)
        limit = self.frame_max
        while end - pos >= 7:
            kind, channel, size = _HEAD.unpack_from(buf, pos)
            if size + FRAME_OVERHEAD > limit:
                raise AMQPError(FRAME_ERROR, f"frame of {size} bytes exceeds frame_max {limit}")
            stop = pos + 7 + size
            if stop >= end:
                break
            if buf[stop] != FRAME_END:
                raise AMQPError(FRAME_ERROR, f"frame end octet {buf[stop]:#x} is not 0xce")
            start = pos + 7
            if kind == FRAME_BODY:
                frames.append((kind, channel, buf[start:stop]))
            elif kind == FRAME_METHOD and buf[start : start + 4] == _PUBLISH_ID:
                whole = _whole_publish(buf, start, stop, channel, limit, self._publish_args)
                if whole is None:
                    frames.append((kind, channel, decode_method(buf, start, stop)))
                else:
                    frames.append((FRAME_METHOD, channel, whole[0]))
                    stop = whole[1]
            elif kind == FRAME_METHOD:
                frames.append((kind, channel, decode_method(buf, start, stop)))
            elif kind == FRAME_HEADER:
                frames.append((kind, channel, decode_content_header(buf, start, stop)))
            elif kind == FRAME_HEARTBEAT:
                if channel:
                    raise AMQPError(FRAME_ERROR, "heartbeat frame on a channel")
                frames.append((kind, 0, None))
            else:
                raise AMQPError(FRAME_ERROR, f"unknown frame type {kind}")
            pos = stop + 1
        self._buf = buf[pos:] if pos < end else b""
        return frames


class BadProtocolHeader(Exception):
    """The peer did not open with AMQP 0-9-1's protocol header: the server answers with its
    own header and closes (AMQP 0-9-1 4.2.2)."""


def decode_method(buf: bytes, start: int, stop: int) -> Method | Publish | Ack:
    if stop - start < 4:
        raise AMQPError(FRAME_ERROR, "method frame too short")
    (index,) = _METHOD_ID.unpack_from(buf, start)
    try:
        if index == _PUBLISH:
            return _decode_publish(buf, start + 4, stop)
        if index == _ACK and stop - start == 13:
            tag = _LONGLONG.unpack_from(buf, start + 4)[0]
            return Ack(tag, bool(buf[start + 12] & 1))
        cls = commands.INDEX_MAPPING.get(index)
        if cls is None:
            raise AMQPError(
                NOT_IMPLEMENTED, f"unknown method class {index >> 16} id {index & 0xFFFF}", index
            )
        method = cls()
        method.unmarshal(buf[start + 4 : stop])
    except (ValueError, TypeError, UnmarshalingException, struct.error, IndexError) as exc:
        raise AMQPError(
            SYNTAX_ERROR, f"malformed method {index >> 16}.{index & 0xFFFF}: {exc}", index
        ) from None
    return method


def _whole_publish(
    buf: bytes, start: int, stop: int, channel: int, limit: int, args: dict
) -> tuple[WholePublish, int] | None:
    """basic.publish at ``start`` with the content header and body frames after it, if
    both are complete in ``buf``, on the same channel, the body in a single frame; returns
    the publish and where the last frame's end octet is, else None (the frames are then
    decoded one by one, with their errors).  ``args`` remembers decoded publish arguments
    (exchange, routing key, flags) by their bytes: a stream repeats them."""
    end = len(buf)
    head = stop + 1
    if end - head < 22:
        return None
    kind, ch, size, class_id, _, body_size = _HEADER_FRAME.unpack_from(buf, head)
    header_end = head + 7 + size
    if (
        kind != FRAME_HEADER
        or ch != channel
        or class_id != 60
        or size < 14
        or size + FRAME_OVERHEAD > limit
        or header_end >= end
        or buf[header_end] != FRAME_END
    ):
        return None
    last = header_end
    body = b""
    if body_size:
        body_head = header_end + 1
        if end - body_head < 8:
            return None
        kind, ch, size = _HEAD.unpack_from(buf, body_head)
        last = body_head + 7 + size
        if (
            kind != FRAME_BODY
            or ch != channel
            or size != body_size
            or last >= end
            or size + FRAME_OVERHEAD > limit
            or buf[last] != FRAME_END
        ):
            return None
        body = buf[body_head + 7 : last]
    raw_args = buf[start + 6 : stop]
    decoded = args.get(raw_args)
    if decoded is None:
        try:
            method = _decode_publish(buf, start + 4, stop)
        except (ValueError, IndexError):
            return None
        if len(args) >= ARGS_CACHE_SIZE:
            args.clear()
        decoded = args[raw_args] = method
    properties = buf[head + 19 : header_end]
    publish = WholePublish(
        decoded.exchange,
        decoded.routing_key,
        decoded.mandatory,
        decoded.immediate,
        properties,
        body,
    )
    return publish, last


def _decode_publish(buf: bytes, pos: int, stop: int) -> Publish:
    pos += 2  # reserved ticket
    n = buf[pos]
    exchange = buf[pos + 1 : pos + 1 + n].decode()
    pos += 1 + n
    n = buf[pos]
    routing_key = buf[pos + 1 : pos + 1 + n].decode()
    pos += 1 + n
    if pos + 1 != stop:
        raise ValueError("basic.publish arguments do not fill the frame")
    bits = buf[pos]
    return Publish(exchange, routing_key, bool(bits & 1), bool(bits & 2))


def decode_content_header(buf: bytes, start: int, stop: int) -> ContentHeader:
    if stop - start < 14:
        raise AMQPError(FRAME_ERROR, "content header frame too short")
    class_id, _, body_size = _CONTENT_HEAD.unpack_from(buf, start)
    if class_id != commands.Basic.frame_id:
        raise AMQPError(FRAME_ERROR, f"content header for class {class_id}")
    return ContentHeader(body_size, buf[start + 12 : stop])


def decode_properties(block: bytes) -> commands.Basic.Properties:
    """The basic properties of a content header's property block (flags, then values)."""
    flags, pos = 0, 0
    for word in range(3):
        if len(block) < pos + 2:
            raise ValueError("content header flags are truncated")
        part = int.from_bytes(block[pos : pos + 2], "big")
        flags |= part << (16 * word)
        pos += 2
        if not part & 1:
            break
    properties = commands.Basic.Properties()
    try:
        properties.unmarshal(flags, block[pos:])
    except (ValueError, TypeError, UnmarshalingException, struct.error, IndexError) as exc:
        raise AMQPError(SYNTAX_ERROR, f"malformed content properties: {exc}") from None
    return properties


# -- encoding ---------------------------------------------------------------------------


def frame(kind: int, channel: int, payload: bytes) -> bytes:
    return _HEAD.pack(kind, channel, len(payload)) + payload + b"\xce"


def method_frame(channel: int, method: Method) -> bytes:
    payload = _METHOD_ID.pack(method.index) + method.marshal()
    return frame(FRAME_METHOD, channel, payload)


def shortstr(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError("short string over 255 bytes")
    return bytes((len(raw),)) + raw


def content_frames(
    channel: int, body_size: int, properties: bytes, body: bytes, frame_max: int
) -> list[bytes]:
    """A content header frame and the body frames (each within ``frame_max``)."""
    header = _CONTENT_HEAD.pack(commands.Basic.frame_id, 0, body_size) + properties
    parts = [_HEAD.pack(FRAME_HEADER, channel, len(header)), header, b"\xce"]
    room = frame_max - FRAME_OVERHEAD
    for offset in range(0, len(body), room):
        chunk = body[offset : offset + room]
        parts += (_HEAD.pack(FRAME_BODY, channel, len(chunk)), chunk, b"\xce")
    return parts


def deliver_head(
    channel: int, consumer_tag: str, exchange: str, routing_key: str
) -> tuple[bytes, bytes]:
    """basic.deliver's bytes before and after its delivery tag and redelivered octet."""
    tag, ex, key = shortstr(consumer_tag), shortstr(exchange), shortstr(routing_key)
    size = 4 + len(tag) + 9 + len(ex) + len(key)
    return _DELIVER_HEAD.pack(FRAME_METHOD, channel, size, 60, 60) + tag, ex + key + b"\xce"


def content_framing(channel: int, properties: bytes, size: int) -> bytes:
    """A content header frame followed by the head of the one body frame of ``size``
    bytes: the content is this, the body, then the frame end octet."""
    header = _HEADER_FRAME.pack(FRAME_HEADER, channel, 12 + len(properties), 60, 0, size)
    if not size:
        raise ValueError("an empty body has no body frame")
    return b"".join((header, properties, b"\xce", _HEAD.pack(FRAME_BODY, channel, size)))


def content_bytes(channel: int, properties: bytes, body: bytes, frame_max: int) -> bytes:
    """The content header and body frames of a message, as one bytes."""
    size = len(body)
    if size > frame_max - FRAME_OVERHEAD:
        return b"".join(content_frames(channel, size, properties, body, frame_max))
    header = _HEADER_FRAME.pack(FRAME_HEADER, channel, 12 + len(properties), 60, 0, size)
    if not size:
        return b"".join((header, properties, b"\xce"))
    body_head = _HEAD.pack(FRAME_BODY, channel, size)
    return b"".join((header, properties, b"\xce", body_head, body, b"\xce"))


def deliver_run(
    channel: int,
    head: tuple[bytes, bytes],
    first_tag: int,
    properties: bytes,
    bodies: list[bytes],
    frame_max: int,
    framing: bytes | None = None,
) -> bytes:
    """basic.deliver (not redelivered) and its content for each of ``bodies``, delivery
    tags consecutive from ``first_tag``: the bytes of delivering them one by one, joined.
    ``head`` is ``deliver_head``'s for the run's consumer, exchange and routing key;
    ``framing``, if given, ``content_framing``'s for the first body's size.  A run of
    bodies of one size (a stream's) is laid out by slice assignment: only the tags are
    made per message."""
    count = len(bodies)
    pre, post = head
    size = len(bodies[0])
    room = frame_max - FRAME_OVERHEAD
    if 0 < size <= room and (count == 1 or list(map(len, bodies)).count(size) == count):
        if framing is None:
            framing = content_framing(channel, properties, size)
        return _deliver_stream(pre, b"\x00" + post + framing, first_tag, bodies)
    after_tag = b"\x00" + post
    framings: dict[int, bytes] = {size: framing} if framing is not None else {}
    parts = []
    for tag, body in zip(range(first_tag, first_tag + count), bodies, strict=True):
        parts += (pre, _LONGLONG.pack(tag), after_tag)
        size = len(body)
        if 0 < size <= room:
            framing = framings.get(size)
            if framing is None:
                framing = framings[size] = content_framing(channel, properties, size)
            parts += (framing, body, b"\xce")
        else:
            parts.append(content_bytes(channel, properties, body, frame_max))
    return b"".join(parts)


def _deliver_stream(pre: bytes, after_tag: bytes, first_tag: int, bodies: list[bytes]) -> bytes:
    """``deliver_run`` for bodies that share their framing: each message is ``pre``, its
    tag, ``after_tag`` (redelivered octet, rest of the method frame, content framing), its
    body and the frame end.  Tags are laid out by slice assignment, in stretches that share
    all but the last octet (packing each tag costs more than the rest of the message)."""
    count = len(bodies)
    parts: list[bytes] = []
    between = b"\xce" + pre  # the last message's frame end, the next one's head
    tag = first_tag
    done = 0
    while done < count:
        low = tag & 0xFF
        size = min(count - done, 256 - low)
        stretch = [between + (tag >> 8).to_bytes(7, "big")] * (4 * size)
        stretch[1::4] = _OCTETS[low : low + size]
        stretch[2::4] = [after_tag] * size
        stretch[3::4] = bodies[done : done + size]
        parts += stretch
        done += size
        tag += size
    parts[0] = parts[0][1:]  # no frame end before the first
    parts.append(b"\xce")
    return b"".join(parts)


def field_table(value: dict[str, Any]) -> bytes:
    """A field table as its wire form with the length prefix."""
    return encode.field_table(value)


def parse_field_table(data: bytes) -> dict[str, Any]:
    """A field table from bytes that lack the length prefix (AMQPLAIN's response)."""
    try:
        _, table = decode.field_table(len(data).to_bytes(4, "big") + data)
    except (ValueError, TypeError, struct.error, IndexError) as exc:
        raise AMQPError(SYNTAX_ERROR, f"malformed field table: {exc}") from None
    return table
