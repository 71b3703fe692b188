"""WebSocket load generator roles: a publisher and a subscriber, one connection each.

They run as :class:`benchmarks.loadgen.Fleet` workers on the same timeline as the MQTT
ones, over the hand-written framing of :mod:`benchmarks.ws_wire`, in one of three dialects:

- ``mqtt``: MQTT 3.1.1 over WebSocket (path ``/mqtt``, subprotocol ``mqtt``), one QoS 0
  PUBLISH per binary frame, as browser MQTT clients send them;
- ``msgpack`` and ``json``: the native protocol (path ``/ws``, subprotocols
  ``broker.v1.msgpack`` and ``broker.v1.json``), as guest (no auth frame, loopback):
  ``{"op":"subscribe","id":1,"topic":…}`` answered by ``ok``, then one
  ``{"op":"publish","topic":…,"payload":…}`` per frame, without an id (QoS 0, no reply),
  and deliveries ``{"op":"message",…}`` counted by the subscriber.

The publisher sends 64 KiB runs of pre-masked frames stamped column-wise; the subscriber
counts deliveries in ``[t_start, t_end)`` with :class:`benchmarks.ws_wire.FrameCounter`.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

import msgpack

from benchmarks import wire, ws_wire
from benchmarks.batch import TS_OFF
from benchmarks.loadgen import (
    BATCH_BYTES,
    IO_TIMEOUT,
    NAP,
    NAP_BELOW,
    RECV_BYTES,
    Result,
    Timeline,
    measured,
    start_signal,
    wait_until,
)

#: dialect -> (path, subprotocol)
ENDPOINTS = {
    "mqtt": ("/mqtt", "mqtt"),
    "msgpack": ("/ws", "broker.v1.msgpack"),
    "json": ("/ws", "broker.v1.json"),
}


@dataclass
class WsJob:
    """What one WebSocket worker does: ``kind`` ``pub`` or ``sub`` on ``topic`` (a filter
    for ``sub``) in ``dialect`` (a key of :data:`ENDPOINTS`) against ``port``."""

    kind: str
    port: int
    name: str
    dialect: str
    topic: str
    pub_index: int = 0

    def run(self, conn: Connection) -> None:
        try:
            sock, pending = open_websocket(self.port, self.dialect)
            if self.dialect == "mqtt":
                pending = _mqtt_session(sock, pending, self)
            elif self.kind == "sub":
                pending = _native_subscribe(sock, pending, self)
            tl = start_signal(conn)
            if self.kind == "sub":
                result = measured(lambda: _subscriber(sock, pending, self, tl))
            else:
                result = measured(lambda: _publisher(sock, self, tl))
            conn.send(("result", result))
            sock.close()
        except Exception:
            conn.send(("error", f"{self.name}: {traceback.format_exc()}"))


def open_websocket(port: int, dialect: str) -> tuple[socket.socket, bytes]:
    """A TCP connection upgraded to ``dialect``'s endpoint, and bytes read past the
    upgrade response."""
    path, subprotocol = ENDPOINTS[dialect]
    sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return sock, ws_wire.handshake(sock, path, subprotocol)
    except BaseException:
        sock.close()
        raise


def _mqtt_session(sock: socket.socket, pending: bytes, job: WsJob) -> bytes:
    """CONNECT (clean, keepalive 0); SUBSCRIBE at QoS 0 for a subscriber.  CONNACK and
    SUBACK are taken to come in a frame each, as both brokers send them."""
    sock.sendall(ws_wire.frame(wire.connect(job.name)))
    connack, pending = ws_wire.read_message(sock, pending)
    if connack[:1] != b"\x20" or connack[3:4] != b"\x00":
        raise ConnectionError(f"CONNACK refused: {connack.hex()}")
    if job.kind == "sub":
        sock.sendall(ws_wire.frame(wire.subscribe(job.topic, 0)))
        suback, pending = ws_wire.read_message(sock, pending)
        if suback[:1] != b"\x90" or suback[-1] > 2:
            raise ConnectionError(f"SUBACK refused: {suback.hex()}")
    return pending


def _encode(dialect: str, request: dict[str, object]) -> tuple[bytes, int]:
    """A native request as its message bytes and frame opcode."""
    if dialect == "msgpack":
        return msgpack.packb(request), ws_wire.BINARY
    return json.dumps(request, separators=(",", ":")).encode(), ws_wire.TEXT


def _decode(dialect: str, message: bytes) -> dict[str, object]:
    return msgpack.unpackb(message) if dialect == "msgpack" else json.loads(message)


def _native_subscribe(sock: socket.socket, pending: bytes, job: WsJob) -> bytes:
    request, opcode = _encode(job.dialect, {"op": "subscribe", "id": 1, "topic": job.topic})
    sock.sendall(ws_wire.frame(request, opcode))
    reply, pending = ws_wire.read_message(sock, pending)
    answer = _decode(job.dialect, reply)
    if answer.get("op") != "ok" or answer.get("id") != 1:
        raise ConnectionError(f"subscribe refused: {answer}")
    return pending


def publish_batch(job: WsJob, count: int) -> ws_wire.FrameBatch:
    """``count`` frames of one stampable publish in ``job.dialect``."""
    if job.dialect == "mqtt":
        packet = wire.steady_publish(job.topic, 0, 1, wire.payload(job.pub_index))
        off = len(packet) - wire.PAYLOAD_SIZE
        return ws_wire.FrameBatch(packet, off, count, ws_wire.BINARY, job.pub_index)
    if job.dialect == "msgpack":
        payload: bytes | str = wire.payload(job.pub_index)
    else:
        payload = ws_wire.text_payload(job.pub_index).decode()
    request = {"op": "publish", "topic": job.topic, "payload": payload}
    message, opcode = _encode(job.dialect, request)
    off = message.find(payload if isinstance(payload, bytes) else payload.encode())
    return ws_wire.FrameBatch(message, off, count, opcode, job.pub_index)


def _publisher(sock: socket.socket, job: WsJob, tl: Timeline) -> Result:
    """Stamped 64 KiB runs of frames from ``t0`` to ``t_end``; anything the broker sends
    back is read (pings answered), an error reply or a close fails the run."""
    t0, _, t_end = tl
    one = len(publish_batch(job, 1).buf)
    batch = publish_batch(job, max(1, BATCH_BYTES // one))
    buf = memoryview(batch.buf)
    replies = ws_wire.FrameCounter(_decoder(job.dialect), _stamp_reader(job.dialect))
    sock.setblocking(False)
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLOUT)
    sent = batches = 0
    off = len(buf)
    wait_until(t0)
    while (now := time.monotonic_ns()) < t_end:
        if off == len(buf):
            batch.stamp(now, batches)
            batches, off = batches + 1, 0
        for _, events in poller.poll(100):
            if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                data = sock.recv(RECV_BYTES)
                if not data:
                    raise ConnectionError("broker closed the publisher's connection")
                replies.feed(data)
                if replies.replies:
                    sock.setblocking(True)
                    sock.sendall(replies.replies)
                    sock.setblocking(False)
                    replies.replies.clear()
            if events & select.POLLOUT:
                off += sock.send(buf[off:])
                if off == len(buf):
                    sent += batch.count
    return {"sent": sent}


def _subscriber(sock: socket.socket, pending: bytes, job: WsJob, tl: Timeline) -> Result:
    """Count deliveries in the window, one latency sample per read (the last delivery's).

    One blocking socket bounded by SO_RCVTIMEO; a read that got little is followed by a
    short nap, as the MQTT subscriber does, so deliveries arrive in large reads.
    """
    _, t_start, t_end = tl
    counter = ws_wire.FrameCounter(_decoder(job.dialect), _stamp_reader(job.dialect), pending)
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 50_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
    received = 0
    latencies: list[int] = []
    while time.monotonic_ns() < t_end:
        try:
            data = sock.recv(RECV_BYTES)
        except BlockingIOError:
            continue
        now = time.monotonic_ns()
        if not data:
            raise ConnectionError("broker closed the subscriber's connection")
        n, stamps = counter.feed(data)
        if counter.replies:
            sock.sendall(counter.replies)
            counter.replies.clear()
        if t_start <= now < t_end:
            received += n
            latencies.extend(now - s for s in stamps)
        if len(data) < NAP_BELOW:
            time.sleep(NAP)
    return {"received": received, "latencies": latencies}


def _stamp_reader(dialect: str) -> Callable[[bytes, int], int]:
    return ws_wire.text_stamp if dialect == "json" else ws_wire.binary_stamp


def _decoder(dialect: str) -> Callable[[bytes], ws_wire.Decoded]:
    """How a subscriber finds deliveries (and their send times) in one message."""
    if dialect == "mqtt":
        return _mqtt_decoder()

    def native(message: bytes) -> ws_wire.Decoded:
        answer = _decode(dialect, message)
        op = answer.get("op")
        if op == "error":
            raise ConnectionError(f"error from the broker: {answer}")
        if op != "message":
            return 0, [], None
        payload = answer["payload"]
        raw = payload if isinstance(payload, bytes) else str(payload).encode()
        stamp = _stamp_reader(dialect)(raw, 0)
        return 1, [stamp], message.find(raw)

    return native


def _mqtt_decoder() -> Callable[[bytes], ws_wire.Decoded]:
    """MQTT packets may span frames and a frame may hold several: the frames' data goes
    through one :class:`benchmarks.wire.Scanner`; a frame that is exactly one short
    PUBLISH is a single delivery."""
    scanner = wire.Scanner()

    def decode(message: bytes) -> ws_wire.Decoded:
        aligned = not scanner.pending
        n, _, stamps = scanner.feed(message, want_ts=False)
        whole = aligned and n == 1 and message[0] >> 4 == 3 and 2 + message[1] == len(message)
        return n, stamps, len(message) - wire.PAYLOAD_SIZE + TS_OFF if whole else None

    return decode
