"""A bare-socket XMPP client for what slixmpp cannot be made to do (ignore the server's
pings, send stanzas before authenticating).  It talks to the plain listener on loopback,
where the broker allows PLAIN without TLS, and reads bytes up to markers."""

from __future__ import annotations

import base64
import socket

from .brokers import BrokerProcess
from .xmpp import TIMEOUT

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"


class RawStream:
    def __init__(self, broker: BrokerProcess) -> None:
        assert broker.xmpp_port, "no xmpp listener"
        self.sock = socket.create_connection((broker.host, broker.xmpp_port), TIMEOUT)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: str) -> None:
        self.sock.sendall(data.encode())

    def read_until(self, marker: bytes) -> bytes:
        """Everything up to and including ``marker`` (the rest stays buffered)."""
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"stream ended before {marker!r}: {self.buffer!r}")
            self.buffer += chunk
        end = self.buffer.index(marker) + len(marker)
        head, self.buffer = self.buffer[:end], self.buffer[end:]
        return head

    def open(self) -> bytes:
        """Open the stream; returns what came up to the end of the stream features."""
        self.send(
            "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
            "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        )
        return self.read_until(b"</stream:features>")

    def login(self, user: str, password: str, resource: str = "raw") -> None:
        """Open, authenticate with PLAIN, restart and bind ``resource``."""
        self.open()
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>")
        assert b"<success" in self.read_until(b"</success>")
        self.open()
        self.send(
            f"<iq type='set' id='bind'><bind xmlns='{NS_BIND}'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        self.read_until(b"</iq>")
