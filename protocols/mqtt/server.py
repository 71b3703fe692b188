"""The thin trio adapter: drives an ``MQTTConnection`` from a byte stream.

One task reads, hands the decoded packets to the state machine in batches (checking
publisher flow control between slices of a batch) and, when it holds acks for durably
routed messages, awaits the store once per read (group commit).

Output is batched: while a reader handles a batch, every connection that gets bytes to send
is only noted; when the batch is done, each is flushed with one non-blocking ``send`` from
the reader itself, so a message costs no task switch and no extra wake-up.  What the
socket does not take at once (or any TLS stream) goes to the connection's writer task,
which finishes it with ``send_all``.
"""

from __future__ import annotations

import logging
import math
import os
from functools import partial

import trio

from broker.guard import guarded_connection
from broker.log import event
from broker.ticker import Ticker
from protocols.mqtt.codec import Publish, Publishes
from protocols.mqtt.connection import MQTTConnection
from protocols.mqtt.frontend import MQTTFrontEnd
from protocols.mqtt.reasons import ADMINISTRATIVE_ACTION

log = logging.getLogger("broker.mqtt")

PUBLISHES = (Publish, Publishes)

RECEIVE_SIZE = 1 << 16
#: Read coalescing (see _Input): reads below SMALL_READ bytes that follow the previous one
#: within STREAM_GAP seconds make the next read wait first.
SMALL_READ = 4096
STREAM_GAP = 0.002
#: Messages handled between checks of publisher flow control (a packet counts as one, a
#: run of publishes as its messages).
SLICE = 64
#: Messages handled before other connections get a turn (their acks refill windows).
BATCH = 128
#: How long a closing connection may take to flush its last bytes (e.g. a refusal).
FLUSH_TIMEOUT = 5.0
#: A peer that accepts none of our bytes for this long is dropped.
SEND_TIMEOUT = 60.0
#: Longest sleep between housekeeping rounds: session deadlines are whole seconds ahead,
#: so one scheduled during a sleep is still met on time; a silent client is dropped at
#: most this much after its keepalive ran out.
HOUSEKEEPING_SLEEP = 1.0


class _Output:
    """Gets one connection's outbox onto the wire.  The writer task starts on first need
    (most output leaves through ``flush``), so an idle connection costs one task."""

    def __init__(
        self,
        front: MQTTFrontEnd,
        stream: trio.abc.Stream,
        conn: MQTTConnection,
        nursery: trio.Nursery,
    ) -> None:
        self._front = front
        self._stream = stream
        self._conn = conn
        self._nursery = nursery
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._wakeup = trio.Event()
        self._writer_started = False
        self._sending = False
        self._finishing = False
        self._closed = False

    def requested(self) -> None:
        """The connection has new output: flush at the end of the current batch, or have
        the writer task send it when no batch is running."""
        batch = self._front.output_batch
        if batch is not None:
            batch.append(self)
        else:
            self._wake_writer()

    def _wake_writer(self) -> None:
        if self._closed:  # the writer has ended, with the connection: nothing more is sent
            return
        if not self._writer_started:
            self._writer_started = True
            self._nursery.start_soon(self.run)
        self._wakeup.set()

    def flush(self) -> None:
        """Send what the socket takes right now; leave the rest to the writer task."""
        conn = self._conn
        if self._closed:
            return
        if self._sending or self._socket is None or not conn.outbox:
            self._wake_writer()
            return
        try:
            # the descriptor is looked up each time: once closed it is -1, never reused
            sent = os.write(self._socket.fileno(), conn.outbox)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._wake_writer()  # the writer task meets the same error and ends the connection
            return
        conn.broker.stats.bytes_sent += sent
        del conn.outbox[:sent]
        if conn.outbox:
            self._wake_writer()
        else:
            conn.output_drained()

    def finish(self) -> None:
        """Send what is queued, then stop."""
        self._finishing = True
        if self._conn.outbox or self._writer_started:
            self._wake_writer()

    async def run(self) -> None:
        conn = self._conn
        try:
            with trio.CancelScope() as timeout:
                while True:
                    await self._wakeup.wait()
                    self._wakeup = trio.Event()
                    data = conn.take_output()
                    if data:
                        self._sending = True
                        timeout.deadline = trio.current_time() + SEND_TIMEOUT
                        await self._stream.send_all(data)
                        timeout.deadline = math.inf
                        self._sending = False
                        conn.output_drained()
                    if self._finishing and not conn.outbox:
                        return
            raise trio.TooSlowError
        finally:
            self._closed = True


class _Input:
    """Reads a connection's bytes.

    On a plain socket it waits for readability before reading, unless the last read filled
    the buffer: at low rates this saves the failing ``recv`` of a read-first loop.  And on
    any stream (TCP, TLS, WebSocket), when a peer that only publishes sends small reads in
    quick succession (a steady stream), it lets bytes gather until the next tick of the
    shared ticker (``mqtt.read_coalesce_us``) before reading, so one wake-up handles
    several packets instead of one: at moderate rates most of a message's cost is the
    wake-up itself.  Sporadic peers, and peers that consume (whose acks are round trips),
    are read at once."""

    def __init__(
        self, stream: trio.abc.Stream, conn: MQTTConnection, ticker: Ticker | None
    ) -> None:
        self._stream = stream
        self._conn = conn
        self._ticker = ticker
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._more = False
        self._small = False
        self._last = 0.0

    async def receive(self) -> bytes:
        """The next bytes; meanwhile the connection's ``read_deadline`` says until when
        the client may keep silent (housekeeping ends it then).  If reading fails, the
        connection ends: no deadline matters after that."""
        conn = self._conn
        sock = self._socket
        now = trio.current_time()
        conn.read_deadline = now + conn.receive_timeout()
        steady = (
            self._ticker is not None
            and self._small
            and now - self._last < STREAM_GAP
            and conn.only_publishes
        )
        self._last = now
        if sock is None:  # TLS, WebSocket: the stream reads, and may wait for the tick
            if steady:
                await self._ticker.wait()
            data = await self._stream.receive_some(RECEIVE_SIZE)
            self._small = len(data) < SMALL_READ
            conn.read_deadline = math.inf
            return data
        if self._more:
            await trio.lowlevel.checkpoint()
        elif steady:
            await self._ticker.wait()
        else:
            await trio.lowlevel.wait_readable(sock)
        while True:
            try:
                data = os.read(sock.fileno(), RECEIVE_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            self._more = len(data) == RECEIVE_SIZE
            self._small = len(data) < SMALL_READ
            conn.read_deadline = math.inf
            return data


def flush_batch(front: MQTTFrontEnd) -> None:
    """Flush every connection that got output during the batch just handled (flushing can
    free room for more deliveries, which join the batch)."""
    pending = front.output_batch
    while pending:
        front.output_batch = []
        for output in pending:
            output.flush()
        pending = front.output_batch
    front.output_batch = None


def _handle_batch(
    front: MQTTFrontEnd, conn: MQTTConnection, packets: list, start: int, end: int
) -> int:
    """Handle packets from ``start`` in slices until the end or until publishers must wait
    for a backlogged consumer; all output of the batch is flushed at its end (there is no
    await inside a batch, so batches of different connections never mix).  Returns where
    it stopped."""
    flow = conn.flow
    handled = 0
    front.output_batch = []
    try:
        while start < end and not conn.closing:
            stop = start
            weight = 0
            while stop < end and weight < SLICE:
                packet = packets[stop]
                weight += len(packet.payloads) if type(packet) is Publishes else 1
                stop += 1
            conn.handle(packets, start, stop)
            start = stop
            handled += weight
            if handled >= BATCH or (conn.publisher and flow.backlogged):
                break
    finally:
        flush_batch(front)
    return start


async def _read(
    stream: trio.abc.Stream, conn: MQTTConnection, front: MQTTFrontEnd, ticker: Ticker | None
) -> None:
    store = conn.broker.store
    alarms = conn.broker.alarms
    flow = conn.flow
    source = _Input(stream, conn, ticker)
    while not conn.closing:
        data = await source.receive()
        if not data:
            return
        packets = conn.decode(data)
        if not alarms.cleared.is_set() and any(type(p) in PUBLISHES for p in packets):
            await alarms.cleared.wait()  # a resource alarm: publishers wait it out
        start, end = 0, len(packets)
        while start < end and not conn.closing:
            if conn.publisher and flow.backlogged:
                await flow.wait()
            elif start:
                await trio.lowlevel.checkpoint()  # let consumers' acks in between
            start = _handle_batch(front, conn, packets, start, end)
        if conn.acks_after_sync:
            await store.sync()
            front.output_batch = []
            try:
                conn.synced()
            finally:
                flush_batch(front)
        conn.decoded()


async def serve(
    front: MQTTFrontEnd,
    stream: trio.abc.Stream,
    *,
    peer: str,
    peer_loopback: bool,
    ticker: Ticker | None = None,
) -> None:
    """Run one MQTT connection until it ends; never raises for the peer's faults.  With a
    ticker, a steady publisher's reads are coalesced on its ticks."""
    conn = MQTTConnection(front, peer=peer, peer_loopback=peer_loopback)
    front.connections.add(conn)
    registered = front.broker.connections.register(
        "mqtt", peer, partial(_describe, conn), partial(_close_by_administrator, conn)
    )
    closed = partial(_closed, conn, registered)
    guard = guarded_connection(log, "mqtt", peer, stream, conn.connection_lost, closed)
    async with guard, trio.open_nursery() as nursery:
        output = _Output(front, stream, conn, nursery)
        conn.on_output = output.requested
        try:
            with trio.CancelScope() as reading:
                # a takeover ends the reading only: the DISCONNECT it queued still goes out
                conn.on_kick = reading.cancel
                await _read(stream, conn, front, ticker)
        finally:
            # detach from the session while the nursery is open: once it has closed
            # (trio checkpoints in between) no writer could start for a delivery
            conn.connection_lost()
        output.finish()
        nursery.cancel_scope.deadline = trio.current_time() + FLUSH_TIMEOUT


def _closed(conn: MQTTConnection, registered: object) -> None:
    """The connection has ended: the broker and the front end forget it."""
    front = conn.front
    front.broker.connections.unregister(registered)
    front.connection_closed(conn)
    event(log, logging.DEBUG, "mqtt connection closed", peer=conn.peer, client_id=conn.client_id)


def _describe(conn: MQTTConnection) -> dict[str, str | None]:
    """The connection as the management API lists it."""
    return {
        "user": conn.username or None,
        "vhost": conn.front.vhost.name,
        "client_id": conn.client_id or None,
    }


def _close_by_administrator(conn: MQTTConnection, reason: str) -> None:
    """The management API closes the connection: DISCONNECT 0x98 (MQTT 5), then end it."""
    conn.disconnect(ADMINISTRATIVE_ACTION)
    conn.on_kick()


async def housekeeping(front: MQTTFrontEnd) -> None:
    """Run session expiries and delayed wills as they fall due, and end connections whose
    clients kept silent past their keepalive (or connect timeout)."""
    while True:
        _end_silent(front, trio.current_time())
        next_at = front.expire()
        delay = HOUSEKEEPING_SLEEP
        if next_at is not None:
            delay = min(delay, max(0.0, next_at - front.clock()))
        await trio.sleep(delay)


def _end_silent(front: MQTTFrontEnd, now: float) -> None:
    """End the connections whose ``read_deadline`` has passed: one sweep a housekeeping
    round costs less than moving a trio deadline at every read of every connection."""
    for conn in [c for c in front.connections if c.read_deadline <= now]:
        if not conn.closing:
            conn.timed_out()
            conn.on_kick()


async def shut_down(front: MQTTFrontEnd, timeout: float) -> None:
    """Close every MQTT connection (MQTT 5 clients get DISCONNECT 0x8B) and wait, up to
    ``timeout``, for them to finish."""
    idle = trio.Event()
    front.on_idle = idle.set
    front.shut_down()
    if front.connections:
        with trio.move_on_after(timeout):
            await idle.wait()
