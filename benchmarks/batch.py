"""Runs of pre-encoded messages whose payloads are stamped column-wise before each send.

Every benchmark payload starts with its send time (``time.monotonic_ns``, 8 bytes), a
sequence number (8 bytes) and the publisher's index (4 bytes), then padding.  A batch is
encoded once; per send only the time and sequence bytes are rewritten, with one strided
slice assignment per byte column, so no Python code runs per message.  MQTT and AMQP
batches differ only in the bytes around the payload.
"""

from __future__ import annotations

TS_OFF = 0  # payload offset of the send timestamp
SEQ_OFF = 8  # payload offset of the sequence number
INDEX_OFF = 16  # payload offset of the publisher index
STAMP_SIZE = 20  # the bytes of a payload that carry information


def payload(pub_index: int, size: int) -> bytes:
    """A payload with zero time and sequence, to be stamped before sending."""
    return bytes(INDEX_OFF) + pub_index.to_bytes(4, "big") + bytes(size - STAMP_SIZE)


class Batch:
    """Equal-sized pre-encoded messages in one buffer, each with a payload at
    ``payload_off`` from its start; the low 16 bits of each sequence number are set to the
    message's index once, the rest by :meth:`stamp`."""

    def __init__(self, messages: list[bytes], payload_off: int) -> None:
        self.count = len(messages)
        self.size = len(messages[0])
        if any(len(m) != self.size for m in messages):
            raise ValueError("messages of a batch must have one size")
        self.payload_off = payload_off
        self.buf = bytearray(b"".join(messages))
        for i in range(self.count):
            off = i * self.size + payload_off + SEQ_OFF + 6
            self.buf[off : off + 2] = (i & 0xFFFF).to_bytes(2, "big")

    def stamp(self, ts: int, batch_no: int) -> bytearray:
        """Write send time ``ts`` and sequence ``batch_no << 16 | index`` into every message."""
        self._column(self.payload_off + TS_OFF, ts.to_bytes(8, "big"))
        self._column(self.payload_off + SEQ_OFF, batch_no.to_bytes(6, "big"))
        return self.buf

    def _column(self, off: int, value: bytes) -> None:
        for j, byte in enumerate(value):
            self.buf[off + j :: self.size] = bytes((byte,)) * self.count
