"""AMQP 0-9-1 load generator roles: a publisher and a consumer, one connection each.

They run as :class:`benchmarks.loadgen.Fleet` workers on the same timeline as the MQTT
ones: set up (connection, channel, declarations), report ``ready``, run from ``t0`` (the
publisher) or count in ``[t_start, t_end)`` (the consumer), report a result dict.
Everything is bounded in time.
"""

from __future__ import annotations

import select
import socket
import struct
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection

from pamqp import commands
from pamqp.base import Frame

from benchmarks import amqpwire
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

CONSUMER_TAG = "bench"
CONFIRM_CHUNK = 100  # publishes per write when confirms bound the window


@dataclass
class AmqpJob:
    """What one AMQP worker process does, on channel 1 of its own connection.

    kind: ``publisher`` or ``consumer``.  The consumer declares ``queue`` (``durable`` or
    not), binds it to ``binding`` (exchange, key) if given, and consumes with ``no_ack`` or
    with manual acks (``prefetch``, one basic.ack with multiple=True per ``ack_every``
    deliveries).  The publisher sends to ``exchange`` with ``routing_key`` as fast as it
    can, ``persistent`` (delivery_mode 2) or not; with ``window`` > 0 it selects publisher
    confirms and keeps at most ``window`` publishes unconfirmed.
    """

    kind: str
    port: int
    name: str
    queue: str = ""
    durable: bool = False
    binding: tuple[str, str] | None = None
    no_ack: bool = True
    prefetch: int = 0
    ack_every: int = 1
    exchange: str = ""
    routing_key: str = ""
    persistent: bool = False
    window: int = 0
    pub_index: int = 0

    def run(self, conn: Connection) -> None:
        try:
            sock, reader = open_channel(self.port, self.name)
            if self.kind == "consumer":
                pending = _start_consuming(sock, reader, self)
                tl = start_signal(conn)
                result = measured(lambda: _consume(sock, pending, self, tl))
            else:
                if self.window:
                    sock.sendall(amqpwire.method(commands.Confirm.Select()))
                    reader.expect(commands.Confirm.SelectOk)
                tl = start_signal(conn)
                result = measured(lambda: _publish(sock, self, tl))
            conn.send(("result", result))
            sock.close()
        except Exception:
            conn.send(("error", f"{self.name}: {traceback.format_exc()}"))


def open_channel(port: int, name: str) -> tuple[socket.socket, amqpwire.FrameReader]:
    """Connect as guest (PLAIN), accept the broker's tuning without heartbeats, open vhost
    ``/`` and channel 1."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(amqpwire.PROTOCOL_HEADER)
    reader = amqpwire.FrameReader(sock)
    reader.expect(commands.Connection.Start)
    start_ok = commands.Connection.StartOk(
        client_properties={"product": "benchmarks.amqpload", "connection_name": name},
        mechanism="PLAIN",
        response="\0guest\0guest",
    )
    sock.sendall(amqpwire.method(start_ok, 0))
    tune = reader.expect(commands.Connection.Tune)
    assert isinstance(tune, commands.Connection.Tune)
    tune_ok = commands.Connection.TuneOk(tune.channel_max, tune.frame_max, heartbeat=0)
    sock.sendall(amqpwire.method(tune_ok, 0) + amqpwire.method(commands.Connection.Open(), 0))
    reader.expect(commands.Connection.OpenOk)
    sock.sendall(amqpwire.method(commands.Channel.Open()))
    reader.expect(commands.Channel.OpenOk)
    return sock, reader


def _start_consuming(sock: socket.socket, reader: amqpwire.FrameReader, job: AmqpJob) -> bytes:
    """Declare, bind, set the prefetch, consume; return bytes read past consume-ok."""
    steps: list[tuple[Frame, type[Frame]]] = [
        (commands.Queue.Declare(queue=job.queue, durable=job.durable), commands.Queue.DeclareOk)
    ]
    if job.binding:
        exchange, key = job.binding
        bind = commands.Queue.Bind(queue=job.queue, exchange=exchange, routing_key=key)
        steps.append((bind, commands.Queue.BindOk))
    if not job.no_ack:
        steps.append((commands.Basic.Qos(prefetch_count=job.prefetch), commands.Basic.QosOk))
    consume = commands.Basic.Consume(queue=job.queue, consumer_tag=CONSUMER_TAG, no_ack=job.no_ack)
    steps.append((consume, commands.Basic.ConsumeOk))
    for request, reply in steps:
        sock.sendall(amqpwire.method(request))
        reader.expect(reply)
    return reader.buf


def _publish(sock: socket.socket, job: AmqpJob, tl: Timeline) -> Result:
    """Publish stamped batches from ``t0`` to ``t_end``.

    Without confirms each write is one 64 KiB batch.  With confirms a write is a chunk of
    :data:`CONFIRM_CHUNK` publishes, sent while the unconfirmed ones stay within
    ``job.window``; ``confirmed`` counts the confirms read in ``[t_start, t_end)``.
    """
    t0, t_start, t_end = tl
    body = bytes(amqpwire.BODY_SIZE)
    one = len(amqpwire.message(job.exchange, job.routing_key, body, job.persistent))
    count = min(CONFIRM_CHUNK, job.window) if job.window else max(1, BATCH_BYTES // one)
    batch = amqpwire.publish_batch(
        job.exchange, job.routing_key, job.persistent, count, job.pub_index
    )
    buf = memoryview(batch.buf)
    confirms = amqpwire.ConfirmCounter()
    sock.setblocking(False)
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    sent = batches = 0
    off = len(buf)  # nothing pending
    before = after = 0  # confirms counted before t_start and before t_end
    wait_until(t0)
    while (now := time.monotonic_ns()) < t_end:
        if off == len(buf) and (not job.window or sent + count - confirms.confirmed <= job.window):
            batch.stamp(now, batches)
            batches, off = batches + 1, 0
        poller.modify(sock, select.POLLIN | (select.POLLOUT if off < len(buf) else 0))
        for _, events in poller.poll(100):
            if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                data = sock.recv(RECV_BYTES)
                if not data:
                    raise ConnectionError("broker closed the publisher's connection")
                confirms.feed(data)
                now = time.monotonic_ns()
                if now < t_start:
                    before = confirms.confirmed
                if now < t_end:
                    after = confirms.confirmed
            if events & select.POLLOUT:
                off += sock.send(buf[off:])
                if off == len(buf):
                    sent += count
    result: Result = {"sent": sent}
    if job.window:
        result["confirmed"] = after - before
    return result


def _consume(sock: socket.socket, pending: bytes, job: AmqpJob, tl: Timeline) -> Result:
    """Count deliveries in the window; with manual acks, ack every ``job.ack_every``.

    One blocking socket bounded by SO_RCVTIMEO, one sample of latency per read (the last
    delivery's).  With no-ack a read that got little is followed by a short nap, as the
    MQTT subscriber does, so deliveries arrive in large reads.
    """
    _, t_start, t_end = tl
    counter = amqpwire.DeliveryCounter(pending)
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 50_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
    received = unacked = 0
    latencies: list[int] = []
    while time.monotonic_ns() < t_end:
        try:
            data = sock.recv(RECV_BYTES)
        except BlockingIOError:
            continue
        now = time.monotonic_ns()
        if not data:
            raise ConnectionError("broker closed the consumer's connection")
        n, tag, stamps = counter.feed(data, want_ts=False)
        if not job.no_ack and n:
            unacked += n
            if unacked >= job.ack_every:
                sock.sendall(amqpwire.ack_frame(tag))
                unacked = 0
        if t_start <= now < t_end:
            received += n
            latencies.extend(now - s for s in stamps)
        if job.no_ack and len(data) < NAP_BELOW:
            time.sleep(NAP)
    return {"received": received, "latencies": latencies}
