"""``broker pub`` and ``broker sub``: minimal blocking MQTT 3.1.1 clients for the shell.

They speak plain MQTT, so they work against this broker and any other (Mosquitto too).
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys

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
        sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if args.tls or args.cafile:
            context = ssl.create_default_context(cafile=args.cafile)
            sock = context.wrap_socket(sock, server_hostname=args.host)
        self.sock = sock
        self.decoder = codec.Decoder()
        self.pending: list = []
        password = args.password.encode() if args.password is not None else None
        self.send(codec.Connect("MQTT", 4, True, 60, args.client_id, args.username, password, None))
        connack = self.expect(codec.Connack)
        if connack.reason_code:
            reason = CONNACK_ERRORS.get(connack.reason_code, f"code {connack.reason_code}")
            sys.exit(f"broker: connection refused: {reason}")

    def send(self, packet: object) -> None:
        self.sock.sendall(codec.encode(packet, 4))

    def next_packet(self) -> object:
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                sys.exit("broker: connection closed by the server")
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    def expect(self, kind: type) -> object:
        packet = self.next_packet()
        if not isinstance(packet, kind):
            sys.exit(f"broker: expected {kind.__name__}, got {type(packet).__name__}")
        return packet

    def close(self) -> None:
        try:
            self.send(codec.Disconnect())
        finally:
            self.sock.close()


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


def subscribe(args: argparse.Namespace) -> None:
    client = Client(args)
    client.sock.settimeout(None)
    client.send(codec.Subscribe(1, [(args.filter, codec.SubscriptionOptions(args.qos))]))
    suback = client.expect(codec.Suback)
    if suback.reason_codes[0] >= 0x80:
        sys.exit(f"broker: subscription to {args.filter!r} refused")
    received = 0
    try:
        while not args.count or received < args.count:
            packet = client.next_packet()
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
