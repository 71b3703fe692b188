"""The counters and the unacked queue of one managed stream (XEP-0198), as plain data.

Both directions count stanzas modulo 2^32: ``handled`` is how many the client sent us
(what our ``<a h=…/>`` reports), ``sent`` how many we sent it.  Every stanza we send
stays in ``unacked`` until the client's ``h`` covers it, so a resumed stream can resend
it and an abandoned one can hand it on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

#: sequence numbers wrap at 2^32 (XEP-0198 section 4)
SEQ_MOD = 1 << 32
#: unacked stanzas a hibernating session may queue before it is ended early
MAX_UNACKED = 1000

NS_SM = "urn:xmpp:sm:3"
REQUEST = f"<r xmlns='{NS_SM}'/>".encode()


class AckOutOfRange(ValueError):
    """The peer acknowledged stanzas we never sent."""


class StreamState:
    """One session's stream management: enabled with an ``id`` that a new stream may
    resume within ``timeout`` seconds (``resumable``)."""

    __slots__ = (
        "id",
        "resumable",
        "timeout",
        "handled",
        "sent",
        "unacked",
        "request_outstanding",
        "hibernating",
        "wake",
    )

    def __init__(self, stream_id: str, *, resumable: bool, timeout: int) -> None:
        self.id = stream_id
        self.resumable = resumable
        self.timeout = timeout
        self.handled = 0
        self.sent = 0
        self.unacked: deque[bytes] = deque()
        #: an ``<r/>`` of ours is waiting for its ``<a/>``
        self.request_outstanding = False
        #: the stream is gone and the session waits for a resumption
        self.hibernating = False
        #: the adapter's wake-up while hibernating (the queue overflowed or it resumed)
        self.wake: Callable[[], None] | None = None

    def awake(self) -> None:
        """The hibernation is over (resumed, or ended): wake the adapter waiting on it."""
        self.hibernating = False
        if self.wake is not None:
            self.wake()
            self.wake = None

    def received(self) -> None:
        """The client sent us a stanza."""
        self.handled = (self.handled + 1) % SEQ_MOD

    def outgoing(self, data: bytes) -> bytes | None:
        """Count a stanza we send and keep it until acked.  Returns the bytes to write
        (with an ack request when none is outstanding), or None while hibernating."""
        self.sent = (self.sent + 1) % SEQ_MOD
        self.unacked.append(data)
        if self.hibernating:
            if len(self.unacked) > MAX_UNACKED and self.wake is not None:
                self.wake()
            return None
        if self.request_outstanding:
            return data
        self.request_outstanding = True
        return data + REQUEST

    def acked(self, h: int) -> None:
        """The client has handled ``h`` of our stanzas: drop those from the queue."""
        count = (h - self.acked_count) % SEQ_MOD
        if count > len(self.unacked):
            raise AckOutOfRange(f"h={h} acknowledges more than the {self.sent} sent")
        for _ in range(count):
            self.unacked.popleft()
        self.request_outstanding = False

    @property
    def acked_count(self) -> int:
        """The ``h`` the client last acknowledged (mod 2^32)."""
        return (self.sent - len(self.unacked)) % SEQ_MOD

    def answer(self) -> bytes:
        """Our ``<a/>``: how many of the client's stanzas we handled."""
        return f"<a xmlns='{NS_SM}' h='{self.handled}'/>".encode()
