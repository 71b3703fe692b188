"""The thin trio adapter: drives an ``AMQPConnection`` from a byte stream.

Per connection, a nursery holds the reading loop (this task), a writer task that sends
the connection's outbox whenever it has bytes, a confirmer task, and, once heartbeats are
negotiated, a heartbeat task.  A read's frames are handled together; confirms for what they
stored wait in order for the store's sync in the confirmer (group commit), while the reader
goes on.  Publishers pause between reads while the core's flow control says a consumer is
backlogged, and a publish during a resource alarm stops reading until it clears.
"""

from __future__ import annotations

import logging
import math
import os
from functools import partial

import trio

from broker.guard import guarded_connection
from broker.log import event
from protocols.amqp.codec import HEARTBEAT_FRAME
from protocols.amqp.connection import OPEN, AMQPConnection
from protocols.amqp.frontend import AMQPFrontEnd

log = logging.getLogger("broker.amqp")

RECEIVE_SIZE = 1 << 16
#: Seconds a client has to complete the handshake up to connection.open-ok.
HANDSHAKE_TIMEOUT = 10.0
#: Seconds a closing connection waits for the peer's close-ok, and to flush its output.
CLOSE_TIMEOUT = 3.0
#: A peer that accepts none of our bytes for this long is dropped.
SEND_TIMEOUT = 60.0
#: Reads whose confirms may wait for the store at once, before the reader waits too.
SYNCS_IN_FLIGHT = 4
#: a store mark taken after some publishes, and the output to release once they are durable
Ticket = tuple[object, list[bytes]]


class _Writer:
    """Sends the connection's outbox; woken by ``requested``, ended by ``finish``."""

    def __init__(self, stream: trio.abc.Stream, conn: AMQPConnection) -> None:
        self._stream = stream
        self._conn = conn
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._wakeup = trio.Event()
        self._finishing = False
        self.sent_at = trio.current_time()

    def requested(self) -> None:
        self._wakeup.set()

    def finish(self) -> None:
        """Send what is queued, then stop."""
        self._finishing = True
        self._wakeup.set()

    async def run(self) -> None:
        conn = self._conn
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            while conn.outbox:
                with trio.fail_after(SEND_TIMEOUT):
                    await self._send()
                self.sent_at = trio.current_time()
                conn.output_drained()
            if self._finishing:
                return

    async def _send(self) -> None:
        """Send the outbox: on a plain socket straight from the buffer (what the socket
        takes now, then the rest once it is writable), else through the stream."""
        outbox = self._conn.outbox
        sock = self._socket
        if sock is None:
            await self._stream.send_all(self._conn.take_output())
            return
        while outbox:
            try:
                # the descriptor is looked up each time: once closed it is -1, never reused
                sent = os.write(sock.fileno(), outbox)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            del outbox[:sent]
            if outbox:
                await trio.lowlevel.wait_writable(sock)


async def _heartbeats(writer: _Writer, conn: AMQPConnection) -> None:
    """Send a heartbeat whenever nothing else went out for half the negotiated interval
    (checked every quarter interval)."""
    half = conn.heartbeat / 2
    while True:
        await trio.sleep(half / 2)
        if trio.current_time() - writer.sent_at >= half and not conn.closing:
            conn.write(HEARTBEAT_FRAME)


async def _read(stream: trio.abc.Stream, conn: AMQPConnection, writer: _Writer) -> None:
    """Read and handle frames until the connection closes, the peer goes quiet past its
    deadline (handshake, heartbeats, close-ok), or EOF.  Beside it run the heartbeats and
    the confirmer, which releases confirms once the store has synced their messages."""
    send, receive = trio.open_memory_channel[Ticket](SYNCS_IN_FLIGHT)
    async with trio.open_nursery() as helpers:
        helpers.start_soon(_confirm, conn, receive)
        try:
            await _read_loop(stream, conn, helpers, writer, send)
        finally:
            helpers.cancel_scope.cancel()


async def _confirm(conn: AMQPConnection, tickets: trio.MemoryReceiveChannel[Ticket]) -> None:
    """Sync the store for each ticket in turn, then let its output go.  The reader goes
    on meanwhile: while one batch's commit is on disk the next is read and routed, and
    one commit serves all the batches that arrived during the previous one."""
    store = conn.broker.store
    async for mark, ticket in tickets:
        await store.sync(mark)
        conn.synced(ticket)


async def _read_loop(
    stream: trio.abc.Stream,
    conn: AMQPConnection,
    beats: trio.Nursery,
    writer: _Writer,
    tickets: trio.MemorySendChannel[Ticket],
) -> None:
    flow = conn.vhost.flow
    deadline = trio.current_time() + HANDSHAKE_TIMEOUT
    beating = False
    while not conn.closed:
        if conn.state == OPEN:
            if conn.heartbeat and not beating:
                beating = True
                beats.start_soon(_heartbeats, writer, conn)
            deadline = trio.current_time() + conn.heartbeat * 2 if conn.heartbeat else math.inf
        elif conn.closing:
            deadline = min(deadline, trio.current_time() + CLOSE_TIMEOUT)
        with trio.move_on_at(deadline) as timer:
            data = await stream.receive_some(RECEIVE_SIZE)
        if timer.cancelled_caught:
            if conn.state == OPEN:
                event(log, logging.INFO, "amqp missed heartbeats", peer=conn.peer)
            return
        if not data:
            return
        conn.receive(data)
        while conn.held:  # a publish during a resource alarm: read nothing until it clears
            await settle(conn, tickets)
            await conn.broker.alarms.cleared.wait()
            conn.resume()
        await settle(conn, tickets)
        if flow.backlogged and conn.state == OPEN:
            await flow.wait()


async def settle(conn: AMQPConnection, tickets: trio.MemorySendChannel[Ticket]) -> None:
    """Send the confirms of what was handled, or hand them to the confirmer when they
    wait for the store (which holds the reader back once SYNCS_IN_FLIGHT wait)."""
    ticket = conn.end_of_batch()
    if ticket is not None:
        await tickets.send((conn.broker.store.mark(), ticket))


async def serve(
    front: AMQPFrontEnd, stream: trio.abc.Stream, *, peer: str, peer_loopback: bool
) -> None:
    """Run one AMQP connection until it ends; never raises for the peer's faults."""
    conn = AMQPConnection(front, peer=peer, peer_loopback=peer_loopback)
    registered = front.broker.connections.register(
        "amqp", peer, partial(_describe, conn), conn.shut_down
    )

    def closed() -> None:
        front.broker.connections.unregister(registered)
        if not front.connections and front.on_idle is not None:
            front.on_idle()

    guard = guarded_connection(log, "amqp", peer, stream, conn.connection_lost, closed)
    async with guard, trio.open_nursery() as nursery:
        writer = _Writer(stream, conn)
        conn.on_output = writer.requested
        nursery.start_soon(writer.run)
        try:
            await _read(stream, conn, writer)
        finally:
            # release queues and consumers while the nursery is open (trio checkpoints
            # after it closes, and deliveries must not find this connection then)
            conn.connection_lost()
        writer.finish()
        nursery.cancel_scope.deadline = trio.current_time() + CLOSE_TIMEOUT


def _describe(conn: AMQPConnection) -> dict[str, str | None]:
    """The connection as the management API lists it."""
    return {
        "user": conn.username or None,
        "vhost": conn.vhost.name,
        "client_id": conn.client_properties.get("connection_name"),
    }


async def shut_down(front: AMQPFrontEnd, timeout: float) -> None:
    """Close every AMQP connection (connection.close 320) and wait, up to ``timeout``, for
    them to finish."""
    idle = trio.Event()
    front.on_idle = idle.set
    for conn in list(front.connections):
        conn.shut_down()
    if front.connections:
        with trio.move_on_after(timeout):
            await idle.wait()
