"""The thin trio adapter of the native WebSocket protocol: the endpoint the runtime
registers on ``/ws``.

Per connection, a nursery of four tasks around one ``NativeConnection``: the reader hands
each message to the state machine (and stops reading while the outbox is full, so a client
that does not read cannot make the broker buffer without bound); the writer sends the
outbox, so deliveries never wait on the reader; the confirmer awaits the store before it
releases replies to durable QoS 1 publishes (group commit: one sync covers every reply held
meanwhile); the pinger sends a WebSocket ping when the client has been quiet a while.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from wsproto.connection import ConnectionState

from broker.core import Broker
from broker.http.app import Request
from broker.http.websocket import WebSocket, WebSocketClosed
from broker.log import event
from protocols.websocket.frames import SUBPROTOCOLS, codec_for
from protocols.websocket.native import NativeConnection

log = logging.getLogger("broker.websocket")

__all__ = ["SUBPROTOCOLS", "endpoint"]

#: A peer that accepts none of our frames for this long is dropped.
SEND_TIMEOUT = 60.0
#: Close codes for input the connection cannot take (RFC 6455 7.4.1).
#: Seconds of silence from the client after which the server pings it.
PING_INTERVAL = 30.0


def endpoint(
    broker: Broker, auth_timeout: float
) -> Callable[[WebSocket, Request], Awaitable[None]]:
    """The handler for ``HttpApp.websocket("/ws", SUBPROTOCOLS, ...)``; a connection
    without credentials on the upgrade has ``auth_timeout`` seconds for its first frame."""

    async def handler(websocket: WebSocket, request: Request) -> None:
        await serve(broker, websocket, request, auth_timeout)

    return handler


class _Wakeup:
    """A resettable event: set by the state machine, awaited and cleared by one task."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


async def serve(
    broker: Broker, websocket: WebSocket, request: Request, auth_timeout: float
) -> None:
    """Run one native-protocol connection until either side closes it."""
    output, room, held = _Wakeup(), _Wakeup(), _Wakeup()

    def on_output() -> None:
        output.set()
        if conn.held:
            held.set()

    conn = NativeConnection(
        broker,
        codec_for(websocket.subprotocol),
        peer=request.peer,
        peer_loopback=request.peer_loopback,
        on_output=on_output,
    )
    registered = broker.connections.register(
        "websocket", request.peer, conn.describe, conn.shut_down
    )
    authorization = request.headers.get("authorization")
    if authorization is not None:
        conn.authenticate_basic(authorization)
    activity = [trio.current_time()]
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_write, conn, websocket, output, room)
            nursery.start_soon(_confirm, broker, conn, held)
            nursery.start_soon(_ping, websocket, activity)
            await _read(broker, conn, websocket, room, activity, auth_timeout)
            nursery.cancel_scope.cancel()
    except* WebSocketClosed:
        pass
    finally:
        conn.close()
        broker.connections.unregister(registered)


async def _read(
    broker: Broker,
    conn: NativeConnection,
    websocket: WebSocket,
    room: _Wakeup,
    activity: list[float],
    auth_timeout: float,
) -> None:
    """Hand each message to the state machine until the client goes or must go."""
    if conn.user is None and conn.closing is None:
        with trio.move_on_after(auth_timeout) as waited:
            conn.receive_many(await _receive(websocket))
        if waited.cancelled_caught:
            event(log, logging.INFO, "websocket login timeout", peer=conn.peer)
            await websocket.close(1008, "authentication timeout")
    while conn.closing is None:
        while not conn.has_room() and not conn.closed:
            await room.wait()
        if broker.flow.backlogged:
            await broker.flow.wait()
        messages = await _receive(websocket)
        activity[0] = trio.current_time()
        conn.receive_many(messages)
    await trio.sleep_forever()  # the writer sends what is left, then closes


async def _receive(websocket: WebSocket) -> list[bytes | str]:
    """The messages that have arrived (at least one); bad input ends the connection (the
    WebSocket logs it)."""
    try:
        return await websocket.receive_many()
    except WebSocketClosed as closed:
        await websocket.close(closed.code)  # sends the close frame if none went yet
        raise


async def _write(
    conn: NativeConnection,
    websocket: WebSocket,
    output: _Wakeup,
    room: _Wakeup,
) -> None:
    """Send the outbox; when it runs dry, let the queues and the reader go on."""
    while True:
        frames = conn.take_output()
        if not frames:
            conn.output_drained()
            room.set()
            if conn.outbox:
                continue
            if conn.closing is not None and not conn.held:
                await websocket.close(*conn.closing)
            await output.wait()
            continue
        with trio.fail_after(SEND_TIMEOUT):
            await websocket.send_many(frames)


async def _confirm(broker: Broker, conn: NativeConnection, held: _Wakeup) -> None:
    """Release held replies once the store has synced the messages they confirm."""
    while True:
        await held.wait()
        count = len(conn.held)
        if count:
            await broker.store.sync()
            conn.release_held(count)


async def _ping(websocket: WebSocket, activity: list[float]) -> None:
    """Ping a client that has been quiet for ``PING_INTERVAL``; a dead peer then fails the
    send (or stalls it past ``SEND_TIMEOUT``) and the connection ends."""
    while True:
        await trio.sleep_until(activity[0] + PING_INTERVAL)
        is_open = websocket.connection.state == ConnectionState.OPEN
        if is_open and trio.current_time() >= activity[0] + PING_INTERVAL:
            activity[0] = trio.current_time()
            with trio.fail_after(SEND_TIMEOUT):
                await websocket.ping()
