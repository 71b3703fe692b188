"""MQTT 3.1.1 and 5.0 load generator: worker processes on raw sockets with pre-encoded packets.

Each worker connects (and subscribes), reports ``ready``, waits for the timeline
``(t0, t_start, t_end)`` in ``time.monotonic_ns`` (system-wide, so comparable across
processes), runs, and reports a result dict.  Publishers send from ``t0`` to ``t_end``;
subscribers count what arrives in ``[t_start, t_end)``.  Everything is bounded in time.
:class:`Fleet` runs any :class:`Worker`: these MQTT jobs and the AMQP ones of
:mod:`benchmarks.amqpload`, side by side in one flow if need be.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import select
import selectors
import socket
import struct
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

from benchmarks import wire

BATCH_BYTES = 64 * 1024
RECV_BYTES = 256 * 1024
NAP, NAP_BELOW = 0.0005, 32 * 1024
IO_TIMEOUT = 5.0
READY_TIMEOUT = 60.0


@dataclass
class Job:
    """What one worker process does.

    kind: ``pub`` (one connection per topic), ``sub`` (one connection per filter) or
    ``idle`` (``count`` connections that only CONNECT).  ``rate`` is messages/s per
    connection, 0 for as fast as possible; ``window`` is the QoS 1 publisher's unacked limit;
    ``version`` the MQTT protocol level (4 or 5).
    """

    kind: str
    port: int
    name: str
    topics: list[str] = field(default_factory=list)
    qos: int = 0
    rate: int = 0
    window: int = 1000
    latency: bool = False
    count: int = 0
    version: int = 4

    def run(self, conn: Connection) -> None:
        _main(conn, self)


class Worker(Protocol):
    """A job that runs in its own process, talking to the runner over ``conn``."""

    name: str

    def run(self, conn: Connection) -> None: ...


Result = dict[str, Any]
Timeline = tuple[int, int, int]


def raise_nofile() -> None:
    """Raise the soft open-files limit to the hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_time() -> float:
    t = os.times()
    return t.user + t.system


def start_signal(conn: Connection) -> Timeline:
    """Report ``ready`` and wait for the runner's timeline."""
    conn.send(("ready", None))
    if not conn.poll(READY_TIMEOUT):
        raise TimeoutError("no start signal")
    return conn.recv()


def measured(run: Callable[[], Result]) -> Result:
    """``run()``'s result plus the worker's CPU use over it, in cores."""
    cpu, wall = cpu_time(), time.monotonic()
    result = run()
    result["cpu"] = (cpu_time() - cpu) / (time.monotonic() - wall)
    return result


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return buf


def _recv_packet(sock: socket.socket) -> bytes:
    """One whole packet: fixed header byte, remaining length, body."""
    head = _recv_exact(sock, 2)
    rl, shift = head[1] & 0x7F, 7
    while head[-1] & 0x80:
        head += _recv_exact(sock, 1)
        rl |= (head[-1] & 0x7F) << shift
        shift += 7
    return head + _recv_exact(sock, rl)


def _check_connack(sock: socket.socket) -> None:
    connack = _recv_packet(sock)
    if connack[0] != 0x20 or connack[3] != 0:
        raise ConnectionError(f"CONNACK refused: {connack.hex()}")


def connect(port: int, client_id: str, version: int = 4, subscriber: bool = False) -> socket.socket:
    """Open an MQTT session (clean, keepalive 0) and check the CONNACK.

    An MQTT 5 subscriber lets the broker assign topic aliases to it.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    aliases = wire.SUBSCRIBER_ALIASES if subscriber else 0
    sock.sendall(wire.connect(client_id, version=version, topic_alias_maximum=aliases))
    _check_connack(sock)
    return sock


def _subscribe(sock: socket.socket, topic_filter: str, qos: int, version: int) -> None:
    sock.sendall(wire.subscribe(topic_filter, qos, version=version))
    suback = _recv_packet(sock)
    if suback[0] != 0x90 or suback[-1] > 2:
        raise ConnectionError(f"SUBACK refused: {suback.hex()}")


def wait_until(t: int) -> None:
    delay = (t - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


def _flood(socks: list[socket.socket], job: Job, tl: Timeline) -> Result:
    """QoS 0 at full speed: one pre-encoded 64 KiB batch per write, per connection."""
    t0, _, t_end = tl
    sel = selectors.DefaultSelector()
    for i, (sock, topic) in enumerate(zip(socks, job.topics, strict=True)):
        count = BATCH_BYTES // wire.packet_size(topic, 0, job.version)
        batch = wire.Batch(topic, 0, count, i, version=job.version)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_WRITE, [batch, 0, len(batch.buf)])  # no, off
    wait_until(t0)
    sent = 0
    while (now := time.monotonic_ns()) < t_end:
        for key, _ in sel.select(0.1):
            state = key.data
            batch, batch_no, off = state
            if off == len(batch.buf):
                batch.stamp(now, batch_no)
                state[1], off = batch_no + 1, 0
            off += key.fileobj.send(memoryview(batch.buf)[off:])  # type: ignore[union-attr]
            state[2] = off
            if off == len(batch.buf):
                sent += batch.count
    return {"sent": sent}


def _windowed(sock: socket.socket, job: Job, tl: Timeline) -> Result:
    """QoS 1 at full speed with ``job.window`` unacked: chunks of 100 pre-encoded packets.

    Chunk k carries packet ids k*100+1..k*100+100 and is resent once all its PUBACKs are
    in; PUBACKs arrive in order (MQTT 3.1.1 4.6, MQTT 5 4.6), so counting them is enough.
    """
    t0, _, t_end = tl
    size = 100
    chunks = [
        wire.Batch(job.topics[0], 1, size, 0, first_packet_id=k * size + 1, version=job.version)
        for k in range(max(1, job.window // size))
    ]
    wait_until(t0)
    sock.settimeout(0.2)
    sent = acked = 0
    counter = wire.AckCounter()
    while (now := time.monotonic_ns()) < t_end:
        while sent - acked // size < len(chunks):
            sock.sendall(chunks[sent % len(chunks)].stamp(now, sent))
            sent += 1
        try:
            data = sock.recv(RECV_BYTES)
        except TimeoutError:
            continue
        if not data:
            raise ConnectionError("broker closed the connection")
        acked = counter.feed(data)
    return {"sent": sent * size, "acked": acked}


def _paced(sock: socket.socket, job: Job, tl: Timeline) -> Result:
    """Fixed offered rate: each message stamped when sent; QoS 1 keeps ``job.window``."""
    t0, _, t_end = tl
    topic = job.topics[0]
    packet = bytearray(wire.steady_publish(topic, job.qos, 1, wire.payload(0), job.version))
    pay_off = len(packet) - wire.PAYLOAD_SIZE
    pid_off = wire.packet_id_offset("" if job.version == wire.MQTT5 else topic)
    interval = 1_000_000_000 / job.rate
    sent = acked = 0
    counter = wire.AckCounter()
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    wait_until(t0)
    while (now := time.monotonic_ns()) < t_end:
        if job.qos and poller.poll(0):
            acked = counter.feed(sock.recv(RECV_BYTES))
        due = min(int((now - t0) / interval) + 1 - sent, 1000)
        if job.qos:
            due = min(due, job.window - (sent - acked))
        parts = []
        for _ in range(max(due, 0)):
            struct.pack_into(">QQ", packet, pay_off + wire.TS_OFF, now, sent)
            if job.qos:
                struct.pack_into(">H", packet, pid_off, sent % 65535 + 1)
            parts.append(bytes(packet))
            sent += 1
        if parts:
            sock.sendall(b"".join(parts))
        next_due = t0 + int(sent * interval)
        time.sleep(max(min(next_due - time.monotonic_ns(), 1_000_000), 50_000) / 1e9)
    return {"sent": sent, "acked": acked}


def _subscriber(socks: list[socket.socket], job: Job, tl: Timeline) -> Result:
    """Count PUBLISHes in the window, PUBACK QoS 1, record latency samples.

    With ``job.latency`` every message's latency is recorded; otherwise one sample per
    read (the last complete message), which is enough for a median under load.  A single
    connection is read with plain blocking calls bounded by SO_RCVTIMEO (one system call
    per read); several go through a selector.  Measuring QoS 0 throughput, a round that
    read little is followed by a short nap so data arrives in large reads: the kernel
    buffers meanwhile, so the broker is not slowed, and the load generator stays cheap
    however many writes the broker makes.
    """
    _, t_start, t_end = tl
    sel = selectors.DefaultSelector()
    for sock in socks:
        sel.register(sock, selectors.EVENT_READ, wire.Scanner())
    single = [(socks[0], sel.get_key(socks[0]).data)] if len(socks) == 1 else None
    if single:
        socks[0].settimeout(None)
        socks[0].setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 50_000))
        socks[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
    received = 0
    latencies: list[int] = []
    nap = not job.latency and not job.qos
    while (now := time.monotonic_ns()) < t_end:
        got = 0
        for sock, scanner in single or [(k.fileobj, k.data) for k, _ in sel.select(0.05)]:
            try:
                data = sock.recv(RECV_BYTES)
            except BlockingIOError:
                continue
            got += len(data)
            now = time.monotonic_ns()
            if not data:
                raise ConnectionError("broker closed a subscriber connection")
            n, acks, stamps = scanner.feed(data, job.latency)
            if acks:
                sock.sendall(acks)
            if t_start <= now < t_end:
                received += n
                latencies.extend(now - s for s in stamps)
        if nap and got < NAP_BELOW:
            time.sleep(NAP)
    return {"received": received, "latencies": latencies}


def _idle(job: Job, conn: Connection) -> Result:
    """Hold ``job.count`` connected sessions until told to close them."""
    socks: list[socket.socket] = []
    for base in range(0, job.count, 100):
        group = []
        for i in range(base, min(base + 100, job.count)):
            sock = socket.create_connection(("127.0.0.1", job.port), timeout=30)
            sock.sendall(wire.connect(f"{job.name}-{i}", version=job.version))
            group.append(sock)
        for sock in group:
            _check_connack(sock)
        socks.extend(group)
    conn.send(("ready", len(socks)))
    conn.poll(READY_TIMEOUT)
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    return {"connected": len(socks)}


def _main(conn: Connection, job: Job) -> None:
    try:
        if job.kind == "idle":
            conn.send(("result", _idle(job, conn)))
            return
        sub = job.kind == "sub"
        socks = [
            connect(job.port, f"{job.name}-{i}", job.version, sub) for i in range(len(job.topics))
        ]
        for i, (sock, topic) in enumerate(zip(socks, job.topics, strict=True)):
            if sub:
                _subscribe(sock, topic, job.qos, job.version)
            elif job.version == wire.MQTT5:
                sock.sendall(wire.alias_setup(topic, i))
        tl = start_signal(conn)
        if job.kind == "sub":
            result = measured(lambda: _subscriber(socks, job, tl))
        elif job.rate:
            result = measured(lambda: _paced(socks[0], job, tl))
        elif job.qos:
            result = measured(lambda: _windowed(socks[0], job, tl))
        else:
            result = measured(lambda: _flood(socks, job, tl))
        conn.send(("result", result))
        for sock in socks:
            sock.close()
    except Exception:
        conn.send(("error", f"{job.name}: {traceback.format_exc()}"))


class Fleet:
    """A group of worker processes, always reaped on exit."""

    def __init__(self) -> None:
        self._ctx = mp.get_context("fork")
        self._workers: list[tuple[mp.process.BaseProcess, Connection]] = []

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc, conn in self._workers:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()

    def start(self, jobs: Sequence[Worker]) -> list[Any]:
        """Start a worker per job and wait for each one's ``ready`` value."""
        new = []
        for job in jobs:
            parent, child = self._ctx.Pipe()
            proc = self._ctx.Process(target=job.run, args=(child,), daemon=True)
            proc.start()
            child.close()
            new.append((proc, parent))
        self._workers += new
        return [self._receive(conn, "ready", READY_TIMEOUT) for _, conn in new]

    def send(self, message: object) -> None:
        for _, conn in self._workers:
            conn.send(message)

    def results(self, timeout: float) -> list[Result]:
        deadline = time.monotonic() + timeout
        return [
            self._receive(conn, "result", max(0.1, deadline - time.monotonic()))
            for _, conn in self._workers
        ]

    @staticmethod
    def _receive(conn: Connection, expect: str, timeout: float) -> Any:
        if not conn.poll(timeout):
            raise TimeoutError(f"load generator worker sent no {expect!r}")
        kind, value = conn.recv()
        if kind == "error":
            raise RuntimeError(value)
        return value
