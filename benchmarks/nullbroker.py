"""A stand-in broker that does almost nothing, to measure the load generator's ceiling.

    python -m benchmarks.runner --only qos0,fanout,fanin \\
        --ours-cmd "{python} -m benchmarks.nullbroker {port}"

It answers CONNECT and SUBSCRIBE, then copies every publisher's bytes, whole packets at a
time, to every subscriber regardless of topic.  Only QoS 0 with one topic size per
publisher is supported (after an MQTT 5 publisher's first PUBLISH, which binds its topic
alias).  It stops on SIGTERM.
"""

from __future__ import annotations

import selectors
import socket
import sys

from benchmarks import wire


class MqttClient:
    def __init__(self) -> None:
        self.buf = b""
        self.packet_size = 0  # set on the first steady PUBLISH: from then on, a publisher
        self.packet_id_offset = 0
        self.version = 4
        self.alias_bound = False


def handshake(sock: socket.socket, c: MqttClient, subscribers: set[socket.socket]) -> None:
    """Answer CONNECT/SUBSCRIBE packets at the head of the buffer until a PUBLISH."""
    while len(c.buf) >= 2 and c.buf[1] < 0x80:
        size = 2 + c.buf[1]
        if len(c.buf) < size:
            return
        kind = c.buf[0] >> 4
        v5 = c.version == wire.MQTT5
        if kind == 3 and v5 and not c.alias_bound:
            c.alias_bound = True
            for sub in subscribers:
                sub.sendall(c.buf[:size])
        elif kind == 3:
            c.packet_size = size
            c.packet_id_offset = wire.packet_id_offset("") + int.from_bytes(c.buf[2:4], "big")
            return
        elif kind == 1:
            c.version = c.buf[8]
            v5 = c.version == wire.MQTT5
            sock.sendall(b"\x20\x03\x00\x00\x00" if v5 else b"\x20\x02\x00\x00")
        elif kind == 8:
            qos = c.buf[size - 1]
            if v5:
                sock.sendall(b"\x90\x04" + c.buf[2:4] + b"\x00" + bytes((qos,)))
            else:
                sock.sendall(b"\x90\x03" + c.buf[2:4] + bytes((qos,)))
            subscribers.add(sock)
        c.buf = c.buf[size:]


def serve(port: int) -> None:
    listener = socket.create_server(("127.0.0.1", port), backlog=1024)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    subscribers: set[socket.socket] = set()
    while True:
        for key, _ in sel.select():
            if key.fileobj is listener:
                sock, _ = listener.accept()
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sel.register(sock, selectors.EVENT_READ, MqttClient())
                continue
            sock, c = key.fileobj, key.data
            try:
                data = sock.recv(256 * 1024)  # type: ignore[union-attr]
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                subscribers.discard(sock)  # type: ignore[arg-type]
                sock.close()  # type: ignore[union-attr]
                continue
            if sock in subscribers:
                continue
            c.buf += data
            if not c.packet_size:
                handshake(sock, c, subscribers)  # type: ignore[arg-type]
            if c.packet_size:
                n = len(c.buf) // c.packet_size
                end = n * c.packet_size
                if c.buf[0] & 0x06:
                    acks = wire.pubacks(c.buf, n, c.packet_size, c.packet_id_offset)
                    sock.sendall(acks)  # type: ignore[union-attr]
                for sub in list(subscribers):
                    try:
                        sub.sendall(c.buf[:end])
                    except OSError:
                        subscribers.discard(sub)
                c.buf = c.buf[end:]


if __name__ == "__main__":
    serve(int(sys.argv[1]))
