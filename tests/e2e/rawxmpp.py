"""A tiny hand-written XMPP client for tests that need control over every byte.

Independent of the broker's XML code on purpose: it negotiates with fixed strings and
finds what it waits for with plain byte searches.  ``login()`` does STARTTLS (optional),
SASL PLAIN and resource binding; after that ``send_until_closed`` sends anything at all and
``wait_closed`` returns what the broker said before it closed the stream.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import ssl
import time
from pathlib import Path

NS_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
TIMEOUT = 10.0
STREAM_ERROR = re.compile(rb"<stream:error>\s*<([a-z-]+) xmlns=['\"]" + NS_STREAMS.encode())


def header(to: str = "localhost", namespace: str = "jabber:client") -> bytes:
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='{namespace}' "
        f"xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='1.0'>"
    ).encode()


class RawXmpp:
    """A blocking XMPP connection on a plain (or TLS) socket; every read has a timeout."""

    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None = None) -> None:
        self.sock: socket.socket = socket.create_connection((host, port), timeout=TIMEOUT)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        #: the local address the broker logs as this connection's peer
        self.peer = "{}:{}".format(*self.sock.getsockname()[:2])
        self.received = b""  # everything read and not yet consumed by read_until

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv(self, deadline: float) -> bytes:
        self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            return self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return b""

    def read_until(self, marker: bytes, timeout: float = TIMEOUT) -> bytes:
        """Everything up to and including ``marker`` (AssertionError if it never comes)."""
        deadline = time.monotonic() + timeout
        while marker not in self.received:
            try:
                chunk = self._recv(deadline)
            except TimeoutError:
                raise AssertionError(f"no {marker!r} in time; got {self.received!r}") from None
            if not chunk:
                raise AssertionError(f"closed before {marker!r}; got {self.received!r}")
            self.received += chunk
        end = self.received.index(marker) + len(marker)
        data, self.received = self.received[:end], self.received[end:]
        return data

    def open_stream(self, to: str = "localhost") -> bytes:
        """Send a stream header; return the features the broker offers."""
        self.send(header(to))
        return self.read_until(b"</stream:features>")

    def starttls(self, ca: Path) -> None:
        self.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.read_until(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        context = ssl.create_default_context(cafile=str(ca))
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")

    def login(self, user: str, password: str, resource: str, *, ca: Path | None = None) -> str:
        """STARTTLS if ``ca`` is given, SASL PLAIN, bind; returns the bound full JID."""
        features = self.open_stream()
        if ca is not None:
            assert b"<starttls" in features
            self.starttls(ca)
            features = self.open_stream()
        assert b"<mechanism>PLAIN</mechanism>" in features, features
        token = base64.b64encode(f"\0{user}\0{password}".encode())
        self.send(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
            + token
            + b"</auth>"
        )
        self.read_until(b"<success")
        if not self.read_until(b">").endswith(b"/>"):
            self.read_until(b"</success>")
        self.open_stream()
        self.send(
            b"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            b"<resource>" + resource.encode() + b"</resource></bind></iq>"
        )
        reply = self.read_until(b"</iq>")
        jid = re.search(rb"<jid>([^<]+)</jid>", reply)
        assert jid is not None, reply
        return jid.group(1).decode()

    def send_until_closed(self, data: bytes) -> None:
        """Send data the broker may refuse midway (it may close before reading it all)."""
        with contextlib.suppress(ConnectionResetError, BrokenPipeError, ssl.SSLError):
            self.send(data)

    def wait_closed(self, timeout: float = TIMEOUT) -> bytes:
        """Read until the broker closes the connection; return what it sent before."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                chunk = self._recv(deadline)
            except TimeoutError:
                raise AssertionError(
                    f"connection still open after {timeout}s; got {self.received!r}"
                ) from None
            if not chunk:
                data, self.received = self.received, b""
                return data
            self.received += chunk

    def close(self) -> None:
        self.sock.close()


def stream_error_condition(data: bytes) -> str | None:
    """The condition of the ``<stream:error>`` in ``data``, if there is one."""
    match = STREAM_ERROR.search(data)
    return match.group(1).decode() if match else None
