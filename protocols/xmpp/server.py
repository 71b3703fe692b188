"""The thin trio adapter: drives an ``XMPPConnection`` from a byte stream.

Per connection a nursery holds the reading loop (this task) and a writer task that sends
the connection's outbox whenever it has bytes, so one read's worth of stanzas, and every
delivery other connections make meanwhile, go out in one send.  STARTTLS swaps the stream
under both once the ``<proceed/>`` is out.
"""

from __future__ import annotations

import logging
import math
import ssl

import trio

from broker.guard import guarded_connection
from broker.log import event
from protocols.xmpp.connection import XMPPConnection
from protocols.xmpp.frontend import XMPPFrontEnd

log = logging.getLogger("broker.xmpp")

RECEIVE_SIZE = 1 << 16
#: Seconds a client has to authenticate and bind a resource.
NEGOTIATION_TIMEOUT = 30.0
#: Seconds a closing stream gets to flush its output and see the peer's close.
CLOSE_TIMEOUT = 3.0
#: A peer that accepts none of our bytes for this long is dropped.
SEND_TIMEOUT = 60.0
#: Seconds the TLS handshake after STARTTLS may take.
TLS_TIMEOUT = 10.0


class _Writer:
    """Sends the connection's outbox whenever it has bytes; returns once the stream is
    closing and everything is out."""

    def __init__(self, stream: trio.abc.Stream, conn: XMPPConnection) -> None:
        self.stream = stream
        self._conn = conn
        self._wakeup = trio.Event()

    def requested(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        conn = self._conn
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            if conn.closing:
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await self.flush()
                return
            await self.flush()

    async def flush(self) -> None:
        outbox = self._conn.outbox
        while outbox:
            data = bytes(outbox)
            outbox.clear()
            with trio.fail_after(SEND_TIMEOUT):
                await self.stream.send_all(data)


async def _read(
    stream: trio.abc.Stream, conn: XMPPConnection, writer: _Writer, tls: ssl.SSLContext | None
) -> None:
    """Read until the stream closes (either side) or negotiation takes too long."""
    negotiated_by = trio.current_time() + NEGOTIATION_TIMEOUT
    while not conn.closing:
        deadline = negotiated_by if conn.jid is None else math.inf
        with trio.move_on_at(deadline) as timer:
            data = await stream.receive_some(RECEIVE_SIZE)
        if timer.cancelled_caught:
            event(log, logging.INFO, "xmpp negotiation timed out", peer=conn.peer)
            conn.close("connection-timeout", "authenticate and bind in time")
            break
        if not data:
            break
        conn.receive(data)
        if conn.tls_requested:
            assert tls is not None
            await writer.flush()
            stream = trio.SSLStream(stream, tls, server_side=True, https_compatible=False)
            with trio.fail_after(TLS_TIMEOUT):
                await stream.do_handshake()
            writer.stream = stream
            conn.tls_established()
    conn.close()


async def serve(
    front: XMPPFrontEnd,
    stream: trio.abc.Stream,
    *,
    peer: str,
    peer_loopback: bool,
    tls: ssl.SSLContext | None,
    secure: bool = False,
) -> None:
    """Run one client stream until it ends; never raises for the peer's faults.  ``tls``
    is the context STARTTLS uses; ``secure`` says the stream is TLS already (port 5223)."""
    conn = front.connection(peer=peer, peer_loopback=peer_loopback, secure=secure)
    guard = guarded_connection(log, "xmpp", peer, stream, lambda: front.lost(conn), _nothing)
    async with guard, trio.open_nursery() as nursery:
        writer = _Writer(stream, conn)
        conn.on_output = writer.requested
        nursery.start_soon(_read, stream, conn, writer, tls)
        await writer.run()
        nursery.cancel_scope.cancel()


def _nothing() -> None:
    pass


async def shut_down(front: XMPPFrontEnd, timeout: float) -> None:
    """Close every stream (stream error system-shutdown) and wait up to ``timeout``."""
    idle = trio.Event()
    front.on_idle = idle.set
    for conn in list(front.connections):
        conn.close("system-shutdown")
    if front.connections:
        with trio.move_on_after(timeout):
            await idle.wait()
