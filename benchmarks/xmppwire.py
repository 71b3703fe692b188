"""Minimal XMPP client wire for the load generator: login, pre-encoded stanzas, scanners.

Logins go stream header, SASL PLAIN, stream restart, resource binding, initial presence,
over plain TCP: every broker under test allows PLAIN without TLS on loopback.  They run
in lockstep over a group of sockets (each step sent on all of them, then awaited on all),
so a few thousand sessions log in within seconds.  Setup is parsed with regular
expressions; the measured loops only count bytes (:class:`Inbox`, :class:`ResultCounter`).
"""

from __future__ import annotations

import base64
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

DOMAIN = "localhost"
PASSWORD = "bench-password"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
BODY = "x" * 64  # a short chat line, as in the MQTT scenarios' 64-byte payloads
SETUP_TIMEOUT = 30.0

_FEATURES_END = re.compile(rb"</stream:features>")
_SUCCESS = re.compile(rb"<success[^>]*?(?:/>|>.*?</success>)", re.S)
_BOUND = re.compile(rb"<jid>([^<]+)</jid>")
_FAILED = re.compile(rb"<failure|<stream:error|type=['\"]error['\"]")
_IQ_ID = re.compile(rb"<iq\b[^>]*?\sid=(['\"])(.*?)\1")


class LoginError(ConnectionError):
    """The broker refused or broke a login; the message quotes what it sent."""


def stream_header(domain: str = DOMAIN) -> bytes:
    return (
        f"<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' "
        "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    ).encode()


def plain_auth(user: str, password: str = PASSWORD) -> bytes:
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    return f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>".encode()


def bind(resource: str) -> bytes:
    return (
        f"<iq type='set' id='bind'><bind xmlns='{NS_BIND}'><resource>{resource}</resource>"
        "</bind></iq>"
    ).encode()


def chat(to: str, body: str = BODY) -> bytes:
    return f"<message type='chat' to='{to}'><body>{body}</body></message>".encode()


def ping(to: str, iq_id: str) -> bytes:
    """XEP-0199 ping to a full JID: the client there answers, after every stanza the
    sender routed to it before."""
    return f"<iq type='get' to='{to}' id='{iq_id}'><ping xmlns='urn:xmpp:ping'/></iq>".encode()


def pong(to: str, iq_id: bytes) -> bytes:
    return f"<iq type='result' to='{to}' id='".encode() + iq_id + b"'/>"


@dataclass(frozen=True)
class Login:
    """One session to open: ``user@DOMAIN/resource``."""

    user: str
    resource: str
    password: str = PASSWORD


class _Conversation:
    """One socket's setup reads: wait for a pattern, fail on an error."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def expect(self, pattern: re.Pattern[bytes]) -> bytes:
        """Read until ``pattern`` matches; return everything up to the match's end."""
        while True:
            found = pattern.search(self.buf)
            end = found.start() if found else len(self.buf)
            if (bad := _FAILED.search(self.buf, 0, end)) is not None and (
                found or b">" in self.buf[bad.start() :]
            ):
                raise LoginError(self.buf[bad.start() : bad.start() + 300].decode(errors="replace"))
            if found:
                seen, self.buf = self.buf[: found.end()], self.buf[found.end() :]
                return seen
            data = self.sock.recv(65536)
            if not data:
                raise LoginError(f"broker closed the stream; it sent {self.buf[-300:]!r}")
            self.buf += data


def login_all(port: int, logins: Sequence[Login], presence: bool = True) -> list[socket.socket]:
    """Open, authenticate and bind every session of ``logins`` in lockstep, then send
    initial presence on each; return the sockets (blocking, TCP_NODELAY) in order."""
    socks = []
    for _ in logins:
        sock = socket.create_connection(("127.0.0.1", port), timeout=SETUP_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(sock)
    talks = [_Conversation(s) for s in socks]
    for features in _step(talks, [stream_header()] * len(talks), _FEATURES_END):
        if b">PLAIN<" not in features:
            raise LoginError(f"no SASL PLAIN without TLS: {features[-300:]!r}")
    _step(talks, [plain_auth(x.user, x.password) for x in logins], _SUCCESS)
    _step(talks, [stream_header()] * len(talks), _FEATURES_END)
    _step(talks, [bind(x.resource) for x in logins], _BOUND)
    if presence:
        for sock in socks:
            sock.sendall(b"<presence/>")
    return socks


def _step(
    talks: list[_Conversation], sends: list[bytes], pattern: re.Pattern[bytes]
) -> list[bytes]:
    """Send each conversation its bytes, then wait for ``pattern`` on each."""
    for talk, data in zip(talks, sends, strict=True):
        talk.sock.sendall(data)
    return [talk.expect(pattern) for talk in talks]


class Inbox:
    """A receiver's view of its stream: whole ``<message>`` stanzas counted with
    ``bytes.count`` per read, and the ids of the IQs to answer.

    A read may end inside a stanza: the bytes that could start an unfinished
    ``</message>`` or an unfinished ``<iq ...>`` start tag are carried into the next read.
    Stanzas of type error fail the run.
    """

    _END = b"</message>"

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> tuple[int, list[bytes]]:
        buf = self._tail + data
        count = buf.count(self._END)
        keep = max(0, len(buf) - len(self._END) + 1)
        ids: list[bytes] = []
        if b"<iq" in buf:
            pos = 0
            while (start := buf.find(b"<iq", pos)) >= 0:
                end = buf.find(b">", start)
                if end < 0:
                    keep = start
                    break
                found = _IQ_ID.match(buf, start, end)
                if found is None:
                    raise ConnectionError(f"an iq without an id: {buf[start : end + 1]!r}")
                ids.append(found.group(2))
                pos = end + 1
            else:
                keep = max(keep, pos)
        if b"error" in buf and _FAILED.search(buf):
            raise ConnectionError(f"error from the broker: {buf[-400:]!r}")
        self._tail = buf[keep:]
        return count, ids


class ResultCounter:
    """A sender's view of its stream: only the answers to its pings arrive, so it counts
    ``<iq`` openings; anything of type error fails the run."""

    def __init__(self) -> None:
        self._tail = b""
        self.results = 0

    def feed(self, data: bytes) -> int:
        buf = self._tail + data
        if b"error" in buf and _FAILED.search(buf):
            raise ConnectionError(f"error from the broker: {buf[-400:]!r}")
        self.results += buf.count(b"<iq")
        self._tail = buf[-2:]
        return self.results
