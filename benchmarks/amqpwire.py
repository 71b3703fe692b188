"""AMQP 0-9-1 frames for the load generator: built with pamqp, scanned by hand.

Setup frames (handshake, declarations, consume) are built and parsed with pamqp, the
reference codec, at setup time only.  In the hot loops a publisher sends pre-encoded runs
of basic.publish + content header + body (:func:`publish_batch`), and two scanners read
what the broker sends back: :class:`DeliveryCounter` counts basic.deliver messages and
:class:`ConfirmCounter` publisher confirms.  Both take whole reads of same-shaped frames in
C with strided slices and fall back to a walk frame by frame for anything else.
"""

from __future__ import annotations

import socket
from itertools import pairwise

from pamqp import body, commands, frame, header
from pamqp.base import Frame

from benchmarks import batch

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
BODY_SIZE = 256
FRAME_HEADER = 7  # type, channel, payload size
FRAME_METHOD, FRAME_CONTENT_HEADER, FRAME_BODY = 1, 2, 3
FRAME_END = 0xCE
METHOD_ARGS = FRAME_HEADER + 4  # a method's arguments follow its class and method id
BODY_SIZE_AT = FRAME_HEADER + 4  # a content header's body size follows class id and weight
CHANNEL = 1
DELIVER = commands.Basic.Deliver.index
ACK = commands.Basic.Ack.index
FATAL = {  # methods that end the connection, channel or consumer, or reject a publish
    commands.Connection.Close.index,
    commands.Channel.Close.index,
    commands.Basic.Cancel.index,
    commands.Basic.Nack.index,
}


def method(command: Frame, channel: int = CHANNEL) -> bytes:
    return frame.marshal(command, channel)


def message(exchange: str, routing_key: str, payload: bytes, persistent: bool) -> bytes:
    """One basic.publish with its content header (delivery_mode 2 if ``persistent``, else
    no properties) and body frame."""
    props = commands.Basic.Properties(delivery_mode=2 if persistent else None)
    return (
        method(commands.Basic.Publish(exchange=exchange, routing_key=routing_key))
        + method(header.ContentHeader(0, len(payload), props))
        + method(body.ContentBody(payload))
    )


def publish_batch(
    exchange: str, routing_key: str, persistent: bool, count: int, pub_index: int
) -> batch.Batch:
    """``count`` publishes of :data:`BODY_SIZE`-byte bodies, ready to stamp and send."""
    one = message(exchange, routing_key, batch.payload(pub_index, BODY_SIZE), persistent)
    return batch.Batch([one] * count, payload_off=len(one) - 1 - BODY_SIZE)


_ACK = frame.marshal(commands.Basic.Ack(multiple=True), CHANNEL)
ACK_FRAME_SIZE = len(_ACK)
ACK_TAG_OFF = METHOD_ARGS


def ack_frame(delivery_tag: int) -> bytes:
    """basic.ack with multiple=True: acknowledges every delivery up to ``delivery_tag``.
    Used in the consumer's loop, so it splices the tag into a template."""
    return _ACK[:ACK_TAG_OFF] + delivery_tag.to_bytes(8, "big") + _ACK[ACK_TAG_OFF + 8 :]


def frame_end(data: bytes, pos: int) -> int | None:
    """Where the frame at ``pos`` ends; None unless it is complete in ``data``."""
    if len(data) - pos < FRAME_HEADER:
        return None
    end = pos + FRAME_HEADER + int.from_bytes(data[pos + 3 : pos + 7], "big") + 1
    if end > len(data):
        return None
    if data[end - 1] != FRAME_END:
        raise ConnectionError(f"bad frame end at {data[pos:][:16].hex()}")
    return end


def method_index(data: bytes, pos: int) -> int:
    """class id << 16 | method id of the method frame at ``pos``."""
    return int.from_bytes(data[pos + FRAME_HEADER : pos + METHOD_ARGS], "big")


def fatal_error(command: Frame) -> ConnectionError:
    """The error for a method in :data:`FATAL`, with its fields (reply code and text)."""
    return ConnectionError(f"broker sent {command.name}: {dict(command)}")


def _fatal_at(data: bytes, pos: int, end: int) -> ConnectionError:
    command = frame.unmarshal(data[pos:end])[2]
    assert isinstance(command, Frame)
    return fatal_error(command)


def content_frames(data: bytes, method_end: int) -> list[int] | None:
    """Where the content header and body frames after a method frame ending at
    ``method_end`` start, then where the last one ends; None while they are incomplete."""
    head_end = frame_end(data, method_end)
    if head_end is None:
        return None
    if data[method_end] != FRAME_CONTENT_HEADER:
        raise ConnectionError(f"method without content header: {data[method_end:][:16].hex()}")
    bounds = [method_end, head_end]
    size_at = method_end + BODY_SIZE_AT
    remaining = int.from_bytes(data[size_at : size_at + 8], "big")
    while remaining > 0:
        body_end = frame_end(data, bounds[-1])
        if body_end is None:
            return None
        remaining -= body_end - bounds[-1] - FRAME_HEADER - 1
        bounds.append(body_end)
    return bounds


class FrameReader:
    """Whole frames from a blocking socket, decoded with pamqp: for setup only."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def next(self) -> object:
        while True:
            if self.buf.startswith(b"AMQP"):
                raise ConnectionError(f"broker refused AMQP 0-9-1: {self.buf[:8]!r}")
            end = frame_end(self.buf, 0)
            if end is not None:
                data, self.buf = self.buf[:end], self.buf[end:]
                return frame.unmarshal(data)[2]
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("broker closed the connection during setup")
            self.buf += chunk

    def expect(self, kind: type[Frame]) -> Frame:
        """Read up to the next ``kind`` method; a close on the way raises."""
        while True:
            value = self.next()
            if isinstance(value, kind):
                return value
            if isinstance(value, Frame) and value.index in FATAL:
                raise fatal_error(value)


class DeliveryCounter:
    """Counts basic.deliver messages (method, content header and body frames) in a stream.

    Fast path: once two deliveries in a row had the same shape (size and the bytes of every
    frame header, class and method id and frame end), a read made of such messages is
    checked with one strided slice per signature byte and counted in C.  Delivery tags and
    bodies vary, so they are not part of the signature.  Anything else is walked frame by
    frame, which learns the shape again.
    """

    def __init__(self, pending: bytes = b"") -> None:
        self.pending = pending
        self.size = 0
        self.signature: list[tuple[int, int]] = []  # (offset in message, byte)
        self.tag_off = 0
        self.body_off = 0

    def feed(self, data: bytes, want_ts: bool) -> tuple[int, int, list[int]]:
        """Consume ``data``; return (deliveries, last delivery tag or 0, send timestamps).

        With ``want_ts`` every delivery's send time is returned, else only the last one's.
        """
        if self.pending:
            data = self.pending + data
        size = self.size
        n = len(data) // size if size else 0
        end = n * size
        if n and all(data[off:end:size].count(b) == n for off, b in self.signature):
            self.pending = data[end:]
            last = end - size
            tag = int.from_bytes(data[last + self.tag_off : last + self.tag_off + 8], "big")
            offs = range(self.body_off, end, size) if want_ts else (last + self.body_off,)
            return n, tag, [int.from_bytes(data[o : o + 8], "big") for o in offs]
        return self._walk(data, want_ts)

    def _walk(self, data: bytes, want_ts: bool) -> tuple[int, int, list[int]]:
        pos = count = tag = 0
        stamps: list[int] = []
        shapes: list[tuple[int, list[tuple[int, int]]]] = []
        while (end := frame_end(data, pos)) is not None:
            kind = data[pos]
            if kind == FRAME_METHOD and method_index(data, pos) == DELIVER:
                delivery = self._delivery(data, pos, end)
                if delivery is None:
                    break
                end, tag_at, body_at, shape = delivery
                count += 1
                tag = int.from_bytes(data[tag_at : tag_at + 8], "big")
                stamps.append(int.from_bytes(data[body_at : body_at + 8], "big"))
                shapes.append(shape)
                if len(shapes) >= 2 and shapes[-1] == shapes[-2]:
                    self.size, self.signature = shape
                    self.tag_off, self.body_off = tag_at - pos, body_at - pos
            elif kind == FRAME_METHOD and method_index(data, pos) in FATAL:
                raise _fatal_at(data, pos, end)
            elif kind in (FRAME_CONTENT_HEADER, FRAME_BODY):  # content outside a delivery
                raise ConnectionError(f"unexpected frame: {data[pos:][:16].hex()}")
            pos = end
        self.pending = data[pos:]
        return count, tag, stamps if want_ts else stamps[-1:]

    @staticmethod
    def _delivery(
        data: bytes, pos: int, method_end: int
    ) -> tuple[int, int, int, tuple[int, list[tuple[int, int]]]] | None:
        """The basic.deliver message at ``pos``: (end, tag offset, body offset, shape), or
        None while its content is incomplete."""
        bounds = content_frames(data, method_end)
        if bounds is None:
            return None
        frames = [pos, *bounds]
        signature_at = [*range(pos + FRAME_HEADER, pos + METHOD_ARGS)]  # class and method id
        for start, end in pairwise(frames):
            signature_at += [*range(start, start + FRAME_HEADER), end - 1]
        end = frames[-1]
        tag_at = pos + METHOD_ARGS + 1 + data[pos + METHOD_ARGS]  # after the consumer tag
        body_at = frames[2] + FRAME_HEADER if len(frames) > 3 else end
        signature = [(off - pos, data[off]) for off in signature_at]
        return end, tag_at, body_at, (end - pos, signature)


class ConfirmCounter:
    """Publisher confirms in a publisher's byte stream.

    Confirms of one channel publishing to one queue arrive in tag order, so the highest
    acknowledged tag is the number of confirmed publishes.  Fast path: a read made only of
    basic.ack frames, checked with strided slices.  A basic.nack, a close or a cancel raises:
    the benchmark's queues have no limits, so any of them means the run is invalid.
    """

    SIGNATURE = tuple(enumerate(_ACK[:ACK_TAG_OFF]))  # frame header, class and method id

    def __init__(self) -> None:
        self.pending = b""
        self.confirmed = 0

    def feed(self, data: bytes) -> int:
        """Consume ``data``; return the number of publishes confirmed so far."""
        if self.pending:
            data = self.pending + data
        size = ACK_FRAME_SIZE
        n = len(data) // size
        if (
            n
            and len(data) == n * size
            and data[size - 1 :: size].count(FRAME_END) == n
            and all(data[off::size].count(b) == n for off, b in self.SIGNATURE)
        ):
            self.pending = b""
            last = len(data) - size + ACK_TAG_OFF
            self.confirmed = max(self.confirmed, int.from_bytes(data[last : last + 8], "big"))
            return self.confirmed
        pos = 0
        while (end := frame_end(data, pos)) is not None:
            if data[pos] == FRAME_METHOD:
                index = method_index(data, pos)
                if index == ACK:
                    tag = int.from_bytes(data[pos + ACK_TAG_OFF : pos + ACK_TAG_OFF + 8], "big")
                    self.confirmed = max(self.confirmed, tag)
                elif index in FATAL:
                    raise _fatal_at(data, pos, end)
            pos = end
        self.pending = data[pos:]
        return self.confirmed
