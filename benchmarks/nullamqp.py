"""A stand-in AMQP 0-9-1 broker that does almost nothing, to measure the load generator's
AMQP ceiling; with a second port it also takes MQTT publishers (for ``mqtt-to-amqp``).

    python -m benchmarks.runner --only amqp-transient,amqp-persistent,mqtt-to-amqp \\
        --brokers ours --ours-cmd "{python} -m benchmarks.nullamqp {amqp_port} {port}"

It answers the handshake and each setup method with its -ok (built with pamqp), then turns
every publisher's messages, whole messages at a time, into basic.deliver messages for every
AMQP consumer regardless of queue or binding: pre-built deliveries with the publishes'
stamp bytes copied in column-wise.  MQTT publishers are handled as
:mod:`benchmarks.nullbroker` does (their packets also go unchanged to MQTT subscribers).  A
publisher in confirm mode gets one basic.ack (multiple) per read.  There is no queue and no
prefetch: deliveries are written straight through, so a slow consumer slows the publisher.
Delivery tags are all 1 and acks are ignored.  It stops on SIGTERM.
"""

from __future__ import annotations

import selectors
import socket
import sys
from dataclasses import dataclass, field

from pamqp import body, commands, frame, header
from pamqp.base import Frame

from benchmarks import amqpwire, nullbroker, wire
from benchmarks.batch import STAMP_SIZE

START = amqpwire.method(
    commands.Connection.Start(
        server_properties={"product": "nullamqp"}, mechanisms="PLAIN", locales="en_US"
    ),
    0,
)


@dataclass
class Source:
    """A steady publisher's messages: ``size`` bytes each with the payload at
    ``payload_off``; ``content`` the content frames a delivery of one carries, its payload
    at ``content_payload_off``."""

    size: int
    payload_off: int
    content: bytes
    content_payload_off: int
    exchange: str
    routing_key: str
    deliveries: dict[str, tuple[bytes, int]] = field(default_factory=dict)

    def deliver(self, tag: str, chunk: bytes, n: int) -> bytes:
        """``n`` basic.deliver messages for consumer ``tag`` carrying the stamps of the
        ``n`` messages in ``chunk``."""
        if tag not in self.deliveries:
            deliver = commands.Basic.Deliver(
                consumer_tag=tag,
                delivery_tag=1,
                exchange=self.exchange,
                routing_key=self.routing_key,
            )
            head = amqpwire.method(deliver)
            self.deliveries[tag] = (head + self.content, len(head) + self.content_payload_off)
        message, payload_at = self.deliveries[tag]
        size = len(message)
        out = bytearray(message * n)
        for j in range(STAMP_SIZE):
            out[payload_at + j :: size] = chunk[self.payload_off + j :: self.size]
        return bytes(out)


def mqtt_source(packet_size: int) -> Source:
    """Deliveries of an MQTT publisher's packets: the payload, through ``amq.topic``."""
    payload = bytes(wire.PAYLOAD_SIZE)
    content_header = amqpwire.method(header.ContentHeader(0, len(payload)))
    content = content_header + amqpwire.method(body.ContentBody(payload))
    payload_off = packet_size - len(payload)
    content_payload_off = len(content_header) + amqpwire.FRAME_HEADER
    return Source(packet_size, payload_off, content, content_payload_off, "amq.topic", "mqtt")


class _Client:
    def __init__(self) -> None:
        self.buf = b""
        self.opened = False  # protocol header received
        self.confirming = False
        self.published = 0
        self.source: Source | None = None  # set on the first publish: from then on, a publisher


def _reply(command: Frame, c: _Client) -> Frame | None:
    """The -ok for a setup method; None for methods that need no reply."""
    match command:
        case commands.Connection.StartOk():
            return commands.Connection.Tune(channel_max=2047, frame_max=131072, heartbeat=0)
        case commands.Connection.Open():
            return commands.Connection.OpenOk()
        case commands.Channel.Open():
            return commands.Channel.OpenOk()
        case commands.Queue.Declare():
            return commands.Queue.DeclareOk(command.queue, message_count=0, consumer_count=0)
        case commands.Queue.Bind():
            return commands.Queue.BindOk()
        case commands.Basic.Qos():
            return commands.Basic.QosOk()
        case commands.Confirm.Select():
            c.confirming = True
            return commands.Confirm.SelectOk()
        case commands.Basic.Consume():
            return commands.Basic.ConsumeOk(consumer_tag=command.consumer_tag)
        case commands.Connection.Close():
            return commands.Connection.CloseOk()
    return None


def _setup(sock: socket.socket, c: _Client, consumers: dict[socket.socket, str]) -> None:
    """Answer the frames at the head of the buffer until the first complete publish."""
    if not c.opened:
        if len(c.buf) < len(amqpwire.PROTOCOL_HEADER):
            return
        c.buf, c.opened = c.buf[len(amqpwire.PROTOCOL_HEADER) :], True
        sock.sendall(START)
    pos = 0
    while (end := amqpwire.frame_end(c.buf, pos)) is not None:
        if c.buf[pos] == amqpwire.FRAME_METHOD:
            _, channel, command = frame.unmarshal(c.buf[pos:end])
            assert isinstance(command, Frame)
            if isinstance(command, commands.Basic.Publish):
                bounds = amqpwire.content_frames(c.buf, end)
                if bounds is not None:
                    payload_at = bounds[1] + amqpwire.FRAME_HEADER  # in the first body frame
                    c.source = Source(
                        size=bounds[-1] - pos,
                        payload_off=payload_at - pos,
                        content=c.buf[end : bounds[-1]],
                        content_payload_off=payload_at - end,
                        exchange=command.exchange,
                        routing_key=command.routing_key,
                    )
                break
            if isinstance(command, commands.Basic.Consume):
                consumers[sock] = command.consumer_tag
            reply = _reply(command, c)
            if reply is not None:
                sock.sendall(amqpwire.method(reply, channel))
        pos = end
    c.buf = c.buf[pos:]


class _Subscribers:
    """Who gets every publisher's messages: MQTT subscribers as they are, AMQP consumers
    (by socket, with their consumer tag) as deliveries."""

    def __init__(self) -> None:
        self.mqtt: set[socket.socket] = set()
        self.amqp: dict[socket.socket, str] = {}

    def __contains__(self, sock: socket.socket) -> bool:
        return sock in self.mqtt or sock in self.amqp

    def drop(self, sock: socket.socket) -> None:
        self.mqtt.discard(sock)
        self.amqp.pop(sock, None)

    def send(self, chunk: bytes, n: int, source: Source) -> None:
        """``chunk`` of ``n`` messages to everyone; a subscriber whose socket fails is
        dropped."""
        targets = [(s, chunk) for s in self.mqtt]
        targets += [(s, source.deliver(tag, chunk, n)) for s, tag in self.amqp.items()]
        for sock, data in targets:
            try:
                sock.sendall(data)
            except OSError:
                self.drop(sock)


def serve(amqp_port: int, mqtt_port: int | None) -> None:
    sel = selectors.DefaultSelector()
    listeners: dict[socket.socket, type] = {
        socket.create_server(("127.0.0.1", amqp_port), backlog=1024): _Client
    }
    if mqtt_port:
        mqtt = socket.create_server(("127.0.0.1", mqtt_port), backlog=1024)
        listeners[mqtt] = nullbroker.MqttClient
    for listener in listeners:
        sel.register(listener, selectors.EVENT_READ)
    subs = _Subscribers()
    mqtt_sources: dict[int, Source] = {}  # by packet size
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock in listeners:
                conn, _ = sock.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sel.register(conn, selectors.EVENT_READ, listeners[sock]())
                continue
            try:
                data = sock.recv(256 * 1024)
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                subs.drop(sock)
                sock.close()
                continue
            if sock in subs:
                continue  # acks
            c = key.data
            c.buf += data
            if isinstance(c, nullbroker.MqttClient):
                _mqtt(sock, c, subs, mqtt_sources)
            else:
                _amqp(sock, c, subs)


def _amqp(sock: socket.socket, c: _Client, subs: _Subscribers) -> None:
    if c.source is None:
        _setup(sock, c, subs.amqp)
    if c.source is not None:
        n = len(c.buf) // c.source.size
        chunk, c.buf = c.buf[: n * c.source.size], c.buf[n * c.source.size :]
        subs.send(chunk, n, c.source)
        if c.confirming and n:
            c.published += n
            sock.sendall(amqpwire.ack_frame(c.published))


def _mqtt(
    sock: socket.socket, c: nullbroker.MqttClient, subs: _Subscribers, sources: dict[int, Source]
) -> None:
    if not c.packet_size:
        nullbroker.handshake(sock, c, subs.mqtt)
    if c.packet_size:
        n = len(c.buf) // c.packet_size
        chunk, c.buf = c.buf[: n * c.packet_size], c.buf[n * c.packet_size :]
        if c.packet_size not in sources:
            sources[c.packet_size] = mqtt_source(c.packet_size)
        subs.send(chunk, n, sources[c.packet_size])


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None)
