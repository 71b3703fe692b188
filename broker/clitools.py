"""``broker pub`` and ``broker sub``: minimal blocking MQTT 3.1.1 clients for the shell.

They speak plain MQTT, so they work against this broker and any other (Mosquitto too).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import ssl
import sys
import time
from collections.abc import Callable

from protocols.mqtt import codec

CONNACK_ERRORS = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad username or password",
    5: "not authorized",
}


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        try:
            sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if args.tls or args.cafile:
                context = ssl.create_default_context(cafile=args.cafile)
                sock = context.wrap_socket(sock, server_hostname=args.host)
        except OSError as exc:
            sys.exit(f"broker: cannot connect to {args.host}:{args.port}: {exc}")
        self.sock = sock
        self.decoder = codec.Decoder()
        self.pending: list = []
        self.keepalive = args.keepalive
        self.pinging = False  # set while waiting for messages: send PINGREQ when idle
        self.last_sent = time.monotonic()
        password = args.password.encode() if args.password is not None else None
        self.send(
            codec.Connect(
                "MQTT", 4, True, args.keepalive, args.client_id, args.username, password, None
            )
        )
        connack = self.expect(codec.Connack)
        if connack.reason_code:
            reason = CONNACK_ERRORS.get(connack.reason_code, f"code {connack.reason_code}")
            sys.exit(f"broker: connection refused: {reason}")

    def send(self, packet: object) -> None:
        self.sock.sendall(codec.encode(packet, 4))
        self.last_sent = time.monotonic()

    def next_packet(self) -> object:
        while not self.pending:
            if self.pinging and self.keepalive:
                # The server drops a client that sends nothing for 1.5 keepalives.
                idle = time.monotonic() - self.last_sent
                if idle >= self.keepalive:
                    self.send(codec.Pingreq())
                    idle = 0
                self.sock.settimeout(self.keepalive - idle)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                if self.pinging:
                    continue
                sys.exit("broker: timed out waiting for the server")
            if not data:
                sys.exit("broker: connection closed by the server")
            self.pending.extend(self.decoder.feed(data))
        if self.pinging and self.keepalive and time.monotonic() - self.last_sent >= self.keepalive:
            self.send(codec.Pingreq())  # messages keep coming, but we have sent nothing
        return self.pending.pop(0)

    def expect(self, kind: type) -> object:
        packet = self.next_packet()
        if not isinstance(packet, kind):
            sys.exit(f"broker: expected {kind.__name__}, got {type(packet).__name__}")
        return packet

    def close(self) -> None:
        try:
            with contextlib.suppress(OSError):  # the connection may already be gone
                self.send(codec.Disconnect())
        finally:
            self.sock.close()


def _clear_errors(tool: Callable[[argparse.Namespace], None]) -> Callable:
    """Network failures end the tool with one line on stderr, not a traceback."""

    def run(args: argparse.Namespace) -> None:
        try:
            tool(args)
        except OSError as exc:
            sys.exit(f"broker: {exc}")

    return run


@_clear_errors
def publish(args: argparse.Namespace) -> None:
    client = Client(args)
    client.send(
        codec.Publish(
            args.topic, args.message.encode(), args.qos, args.retain, False, 1 if args.qos else None
        )
    )
    if args.qos == 1:
        client.expect(codec.Puback)
    elif args.qos == 2:
        client.expect(codec.Pubrec)
        client.send(codec.Pubrel(1))
        client.expect(codec.Pubcomp)
    client.close()


@_clear_errors
def subscribe(args: argparse.Namespace) -> None:
    client = Client(args)
    client.send(codec.Subscribe(1, [(args.filter, codec.SubscriptionOptions(args.qos))]))
    suback = client.expect(codec.Suback)
    if suback.reason_codes[0] >= 0x80:
        sys.exit(f"broker: subscription to {args.filter!r} refused")
    client.sock.settimeout(None)
    client.pinging = True
    received = 0
    try:
        while not args.count or received < args.count:
            packet = client.next_packet()
            if isinstance(packet, codec.Pubrel):
                client.send(codec.Pubcomp(packet.packet_id))
                continue
            if not isinstance(packet, codec.Publish):
                continue
            if packet.qos == 1:
                client.send(codec.Puback(packet.packet_id))
            elif packet.qos == 2:
                client.send(codec.Pubrec(packet.packet_id))
            text = packet.payload.decode(errors="replace")
            print(f"{packet.topic} {text}" if args.verbose else text, flush=True)
            received += 1
    finally:
        client.close()
