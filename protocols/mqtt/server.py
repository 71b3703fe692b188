"""The thin trio adapter: drives an ``MQTTConnection`` from a byte stream.

One task reads, feeds whole chunks to the state machine and, when it holds acks for
durably routed messages, awaits the store once for the whole chunk (group commit).  A
second task writes whatever accumulated in the outbox with one ``send_all`` per wake-up,
so deliveries from many publishers coalesce into few system calls.
"""

from __future__ import annotations

import logging

import trio

from broker.log import event
from protocols.mqtt.connection import MQTTConnection
from protocols.mqtt.frontend import MQTTFrontEnd

log = logging.getLogger("broker.mqtt")

RECEIVE_SIZE = 1 << 16
#: Packets handled between checks of publisher flow control.
SLICE = 64
#: How long a closing connection may take to flush its last bytes (e.g. a refusal).
FLUSH_TIMEOUT = 5.0
#: A peer that accepts none of our bytes for this long is dropped.
SEND_TIMEOUT = 60.0


class _Writer:
    def __init__(self, stream: trio.abc.Stream, conn: MQTTConnection) -> None:
        self._stream = stream
        self._conn = conn
        self._wakeup = trio.Event()
        self._finishing = False

    def wake(self) -> None:
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
            data = conn.take_output()
            if data:
                with trio.fail_after(SEND_TIMEOUT):
                    await self._stream.send_all(data)
                conn.output_drained()
            if self._finishing and not conn.outbox:
                return


async def _read(stream: trio.abc.Stream, conn: MQTTConnection) -> None:
    store = conn.broker.store
    flow = conn.flow
    while not conn.closing:
        with trio.move_on_after(conn.receive_timeout()) as scope:
            data = await stream.receive_some(RECEIVE_SIZE)
        if scope.cancelled_caught:
            conn.timed_out()
            return
        if not data:
            return
        packets = conn.decode(data)
        for start in range(0, len(packets), SLICE):
            if conn.publisher and flow.backlogged:
                await flow.wait()
            conn.handle(packets, start, min(start + SLICE, len(packets)))
            if conn.acks_after_sync:
                await store.sync()
                conn.synced()
        conn.decoded()


async def serve(
    front: MQTTFrontEnd, stream: trio.abc.Stream, *, peer: str, peer_loopback: bool
) -> None:
    """Run one MQTT connection until it ends; never raises for the peer's faults."""
    conn = MQTTConnection(front, peer=peer, peer_loopback=peer_loopback)
    writer = _Writer(stream, conn)
    conn.on_output = writer.wake
    try:
        async with trio.open_nursery() as nursery:
            conn.on_kick = nursery.cancel_scope.cancel
            nursery.start_soon(writer.run)
            await _read(stream, conn)
            conn.connection_lost()
            writer.finish()
            nursery.cancel_scope.deadline = trio.current_time() + FLUSH_TIMEOUT
    except* (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
        event(log, logging.DEBUG, "mqtt connection dropped", peer=peer)
    except* Exception:
        log.exception("mqtt connection failed", extra={"fields": {"peer": peer}})
    finally:
        conn.connection_lost()
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await stream.aclose()
        event(log, logging.DEBUG, "mqtt connection closed", peer=peer, client_id=conn.client_id)
