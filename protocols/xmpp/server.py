"""The thin trio adapter: drives an ``XMPPConnection`` from a byte stream.

Per connection a nursery holds the reading loop (this task) and a writer task that sends
the connection's outbox whenever it has bytes, so one read's worth of stanzas, and every
delivery other connections make meanwhile, go out in one send.  STARTTLS swaps the stream
under both once the ``<proceed/>`` is out.  XMPP over WebSocket runs here too, on a stream
of whole messages (see ``websocket``).
"""

from __future__ import annotations

import logging
import math
import os
import ssl
from functools import partial

import trio

from broker.guard import guarded_connection
from broker.log import event
from broker.store.base import Store
from protocols.xmpp.connection import XMPPConnection
from protocols.xmpp.framing import STREAM, Framing
from protocols.xmpp.frontend import XMPPFrontEnd
from protocols.xmpp.ping import IdleTimer

log = logging.getLogger("broker.xmpp")

RECEIVE_SIZE = 1 << 16
#: Seconds a client has to authenticate and bind a resource.
NEGOTIATION_TIMEOUT = 30.0
#: Seconds a closing stream gets to flush its output and see the peer's close.
CLOSE_TIMEOUT = 3.0
#: A peer that accepts none of our bytes for this long is dropped.
SEND_TIMEOUT = 60.0
#: Seconds a bound stream may send nothing before it gives up what it can rebuild (its
#: parser: most of an idle session's memory), as ejabberd hibernates idle processes.
RELEASE_AFTER = 1.0
#: Seconds the TLS handshake after STARTTLS may take.
TLS_TIMEOUT = 10.0


class _Writer:
    """Sends the connection's outbox whenever it has bytes; returns once the stream is
    closing and everything is out."""

    def __init__(self, stream: trio.abc.Stream, conn: XMPPConnection) -> None:
        self.stream = stream
        self._conn = conn
        self._wakeup = trio.Event()
        self._sending = trio.Lock()  # held by whoever sends, so only one task does

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
        async with self._sending:
            await self._send_outbox()

    async def hold_until_durable(self, store: Store) -> None:
        """Send nothing until what the store has queued is committed."""
        async with self._sending:
            await store.sync()

    async def start_tls(self, tls: ssl.SSLContext) -> trio.SSLStream:
        """Send what is queued (the ``<proceed/>``), then wrap the stream in TLS; the
        writer task's sends wait meanwhile instead of racing on the raw stream."""
        async with self._sending:
            await self._send_outbox()
            stream = trio.SSLStream(self.stream, tls, server_side=True, https_compatible=False)
            with trio.fail_after(TLS_TIMEOUT):
                await stream.do_handshake()
            self.stream = stream
        return stream

    async def _send_outbox(self) -> None:
        outbox = self._conn.outbox
        stream = self.stream
        if outbox and isinstance(stream, trio.SocketStream):
            # what the socket takes right now goes without send_all's machinery (a
            # deadline, a checkpoint): the usual case, since outboxes are small
            try:
                sent = os.write(stream.socket.fileno(), outbox)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            del outbox[:sent]
        while outbox:
            data = bytes(outbox)
            outbox.clear()
            with trio.fail_after(SEND_TIMEOUT):
                await stream.send_all(data)
        self._conn.backlog_over()


async def _read(
    front: XMPPFrontEnd,
    stream: trio.abc.Stream,
    conn: XMPPConnection,
    writer: _Writer,
    tls: ssl.SSLContext | None,
) -> None:
    """Read until the stream closes (either side) or negotiation takes too long."""
    negotiated_by = trio.current_time() + NEGOTIATION_TIMEOUT
    settings = front.settings
    idle = IdleTimer(conn, settings.ping_interval, settings.ping_timeout, trio.current_time())
    quiet_at = math.inf  # when the bound stream counts as quiet (see RELEASE_AFTER)
    while not conn.closing:
        deadline = negotiated_by if conn.jid is None else idle.deadline
        with trio.move_on_at(min(deadline, quiet_at)) as timer:
            data = await stream.receive_some(RECEIVE_SIZE)
        if timer.cancelled_caught:
            if trio.current_time() < deadline:
                conn.quiet()
                quiet_at = math.inf
                continue
            if conn.jid is not None:  # quiet too long: ping, or close if that went unanswered
                idle.expired(trio.current_time())
                continue
            event(log, logging.INFO, "xmpp negotiation timed out", peer=conn.peer)
            conn.close("connection-timeout", "authenticate and bind in time")
            break
        if not data:
            break
        now = trio.current_time()
        idle.input(now)
        quiet_at = now + RELEASE_AFTER if conn.jid is not None else math.inf
        conn.receive(data)
        front.end_of_input()
        if conn.sync_before_output:
            conn.sync_before_output = False
            await writer.hold_until_durable(front.broker.store)
        if conn.tls_requested:
            assert tls is not None
            stream = await writer.start_tls(tls)
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
    framing: Framing = STREAM,
) -> None:
    """Run one client stream until it ends; never raises for the peer's faults.  ``tls``
    is the context STARTTLS uses; ``secure`` says the stream is TLS already (port 5223)."""
    conn = front.connection(peer=peer, peer_loopback=peer_loopback, secure=secure, framing=framing)
    registered = front.broker.connections.register(
        "xmpp", peer, partial(_describe, conn), partial(conn.close, "policy-violation")
    )
    guard = guarded_connection(
        log,
        "xmpp",
        peer,
        stream,
        lambda: front.lost(conn),
        partial(front.broker.connections.unregister, registered),
    )
    async with guard, trio.open_nursery() as nursery:
        writer = _Writer(stream, conn)
        conn.on_output = writer.requested
        nursery.start_soon(_read, front, stream, conn, writer, tls)
        await writer.run()
        nursery.cancel_scope.cancel()
    await _hibernate(front, conn)


async def _hibernate(front: XMPPFrontEnd, conn: XMPPConnection) -> None:
    """If the lost stream's session hibernates (XEP-0198), wait until it is resumed,
    its queue overflows or its resume timeout passes, then let it end if not resumed."""
    state = front.sm.hibernated(conn)
    if state is None:
        return
    woken = trio.Event()
    state.wake = woken.set
    try:
        with trio.move_on_after(state.timeout):
            await woken.wait()
    finally:
        front.sm.expire(conn)


def _describe(conn: XMPPConnection) -> dict[str, str | None]:
    """The stream as the management API lists it."""
    jid = None if conn.jid is None else str(conn.jid)
    return {"user": conn.username, "vhost": "/", "client_id": jid}


async def shut_down(front: XMPPFrontEnd, timeout: float) -> None:
    """Close every stream (stream error system-shutdown) and wait up to ``timeout``."""
    idle = trio.Event()
    front.on_idle = idle.set
    for conn in list(front.connections):
        conn.close("system-shutdown")
    if front.connections:
        with trio.move_on_after(timeout):
            await idle.wait()
