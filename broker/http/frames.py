"""The hot path of WebSocket framing, by hand (RFC 6455 section 5), for connections
without extensions: unfragmented data frames from the client are parsed and unmasked in
bulk, and data frames to the client built directly.  Everything else (control frames,
fragments, reserved bits, compression) stays with wsproto, which is also the reference the
tests hold this against: ``DataFrameReader`` hands the stream over to it at the first frame
it does not take.
"""

from __future__ import annotations

import numpy

_TEXT, _BINARY = 0x1, 0x2


class FrameTooBig(Exception):
    """A frame longer than the limit (close 1009)."""


class BadText(Exception):
    """A text frame that is not UTF-8 (close 1007)."""


class NotBinary(Exception):
    """A text frame where only binary data is taken (close 1003)."""


class DataFrameReader:
    """Parses client frames while they are whole, unfragmented, masked data frames."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buffer = b""
        #: the bytes from the first frame this reader does not take, once there is one
        self.handed_over: bytes | None = None

    def feed(self, data: bytes) -> list[bytes | str]:
        """The messages of the whole frames ``data`` completes: bytes, or str for text."""
        opcodes, lengths, payloads = self._parse(data)
        messages: list[bytes | str] = []
        pos = 0
        for opcode, length in zip(opcodes, lengths, strict=True):
            payload = payloads[pos : pos + length]
            pos += length
            if opcode == _BINARY:
                messages.append(payload)
            else:
                try:
                    messages.append(payload.decode())
                except UnicodeDecodeError:
                    raise BadText() from None
        return messages

    def feed_stream(self, data: bytes) -> bytes:
        """The data of the whole binary frames ``data`` completes, as one byte string (for
        a byte-stream protocol, to which frame boundaries mean nothing)."""
        opcodes, _, payloads = self._parse(data)
        if _TEXT in opcodes:
            raise NotBinary()
        return payloads

    def _parse(self, data: bytes) -> tuple[bytearray, list[int], bytes]:
        """Each whole frame's opcode and length, and their payloads unmasked, joined."""
        buffer = self._buffer + data if self._buffer else data
        opcodes = bytearray()
        lengths: list[int] = []
        plain = _Unmasked()
        pos, end = 0, len(buffer)
        while end - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            opcode = first & 0x0F
            if first & 0xF0 != 0x80 or not second & 0x80 or opcode not in (_TEXT, _BINARY):
                self.handed_over = buffer[pos:]  # not a final, masked, plain data frame
                break
            length, header = second & 0x7F, 2
            if length == 126:
                if end - pos < 4:
                    break
                length, header = int.from_bytes(buffer[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, header = int.from_bytes(buffer[pos + 2 : pos + 10], "big"), 10
            if length > self.max_size:
                raise FrameTooBig(length)
            start = pos + header + 4
            if end < start + length:
                break
            stride = header + 4 + length
            count = _uniform_run(buffer, pos, end, stride, header)
            if count:
                opcodes += bytes((opcode,)) * count
                lengths += [length] * count
                plain.uniform(buffer, pos, header, stride, count)
                pos += stride * count
            else:
                opcodes.append(opcode)
                lengths.append(length)
                plain.frame(buffer, start, length)
                pos = start + length
        self._buffer = b"" if self.handed_over is not None else buffer[pos:]
        return opcodes, lengths, plain.joined()


class _Unmasked:
    """The unmasked payloads of one read's frames, in order: frames one by one are
    gathered and unmasked together; a run of frames alike but for their masks and
    payloads is unmasked as one array (a row per frame)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._masked: list[bytes] = []
        self._keys: list[bytes] = []

    def frame(self, buffer: bytes, start: int, length: int) -> None:
        self._masked.append(buffer[start : start + length])
        self._keys.append((buffer[start - 4 : start] * (length // 4 + 1))[:length])

    def uniform(self, buffer: bytes, pos: int, header: int, stride: int, count: int) -> None:
        self._gathered()
        rows = numpy.frombuffer(buffer, numpy.uint8, count * stride, pos).reshape(count, stride)
        length = stride - header - 4
        keys = numpy.tile(rows[:, header : header + 4], (1, length // 4 + 1))[:, :length]
        self._chunks.append(numpy.bitwise_xor(rows[:, header + 4 :], keys).tobytes())

    def joined(self) -> bytes:
        self._gathered()
        chunks = self._chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _gathered(self) -> None:
        if self._masked:
            self._chunks.append(_xor(b"".join(self._masked), b"".join(self._keys)))
            self._masked.clear()
            self._keys.clear()


#: Frames in a row worth unmasking as one array.
_UNIFORM_MIN = 8


def _uniform_run(buffer: bytes, pos: int, end: int, stride: int, header: int) -> int:
    """How many whole frames from ``pos`` have the ``header`` bytes of the one there (the
    same type and length, so ``stride`` bytes apart), if at least ``_UNIFORM_MIN``;
    else 0."""
    count = (end - pos) // stride
    if count < _UNIFORM_MIN:
        return 0
    for at in range(pos, pos + header):
        column = buffer[at : at + count * stride : stride]
        count -= len(column.lstrip(column[:1]))
    return count if count >= _UNIFORM_MIN else 0


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the repeated 4-byte mask."""
    return _xor(payload, (mask * (len(payload) // 4 + 1))[: len(payload)])


def _xor(data: bytes, key: bytes) -> bytes:
    """``data`` XOR ``key`` (of the same length), in numpy."""
    return numpy.bitwise_xor(
        numpy.frombuffer(data, numpy.uint8), numpy.frombuffer(key, numpy.uint8)
    ).tobytes()


def data_frame(message: bytes | bytearray | memoryview | str) -> bytes:
    """One unmasked, final data frame (server to client)."""
    if isinstance(message, str):
        payload, first = message.encode(), 0x80 | _TEXT
    else:
        payload, first = message, 0x80 | _BINARY
    return _header(first, len(payload)) + payload


def data_frames(messages: list[bytes | str]) -> bytes:
    """The data frames of several messages, joined; binary messages of one size (a stream
    of deliveries) share their header, so they are framed in one join."""
    first = messages[0]
    if type(first) is bytes:
        size = len(first)
        if all(type(message) is bytes and len(message) == size for message in messages):
            header = _header(0x80 | _BINARY, size)
            return header + header.join(messages)  # type: ignore[arg-type]
    return b"".join([data_frame(message) for message in messages])


def _header(first: int, size: int) -> bytes:
    if size < 126:
        return bytes((first, size))
    if size < 1 << 16:
        return bytes((first, 126)) + size.to_bytes(2, "big")
    return bytes((first, 127)) + size.to_bytes(8, "big")
