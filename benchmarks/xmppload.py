"""XMPP load generator roles: senders, receivers and idle sessions, each a Fleet worker.

Pair ``i`` is account ``send{i}`` (resource ``s``) chatting to ``recv{i}`` (resource
``r``).  A sender streams pre-encoded runs of ``--xmpp-batch`` chat messages to its
receiver's full JID, each run followed by an XEP-0199 ping to that JID; the receiver
answers every ping, and stanzas between one pair keep their order, so each answer
confirms a whole run delivered.  A sender keeps at most ``window`` messages unconfirmed
and so never overruns the broker.  Receivers count ``</message>`` in whole reads.
Idle workers log sessions in and then only drain what the broker sends them.
Everything is bounded in time.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from benchmarks.loadgen import (
    NAP,
    NAP_BELOW,
    READY_TIMEOUT,
    RECV_BYTES,
    Result,
    Timeline,
    measured,
    start_signal,
    wait_until,
)
from benchmarks.xmppwire import (
    DOMAIN,
    Inbox,
    Login,
    ResultCounter,
    chat,
    login_all,
    ping,
    pong,
)

LOGIN_GROUP = 100  # sessions logged in together, in lockstep
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


def sender_jid(pair: int) -> str:
    return f"send{pair}@{DOMAIN}/s"


def receiver_jid(pair: int) -> str:
    return f"recv{pair}@{DOMAIN}/r"


def pair_accounts(pairs: int) -> list[str]:
    return [f"{role}{i}" for i in range(pairs) for role in ("send", "recv")]


def idle_logins(sessions: int) -> list[Login]:
    """``sessions`` sessions, one for each account ``idle{n}``."""
    return [Login(f"idle{i}", "r") for i in range(sessions)]


@dataclass
class XmppJob:
    """What one XMPP worker process does.

    kind: ``sender`` or ``receiver`` (one session per pair in ``pairs``), or ``idle``
    (the sessions of ``logins``, held until the runner says ``close``).  A sender sends
    runs of ``batch`` messages and keeps at most ``window`` unconfirmed.
    """

    kind: str
    port: int
    name: str
    pairs: list[int] = field(default_factory=list)
    window: int = 1000
    batch: int = 100
    logins: list[Login] = field(default_factory=list)

    def run(self, conn: Connection) -> None:
        try:
            if self.kind == "idle":
                conn.send(("result", _idle(self, conn)))
                return
            role = "send" if self.kind == "sender" else "recv"
            resource = "s" if self.kind == "sender" else "r"
            socks = login_all(self.port, [Login(f"{role}{i}", resource) for i in self.pairs])
            tl = start_signal(conn)
            if self.kind == "sender":
                result = measured(lambda: _send(socks, self, tl))
            else:
                result = measured(lambda: _receive(socks, self, tl))
            conn.send(("result", result))
            for sock in socks:
                sock.close()
        except Exception:
            conn.send(("error", f"{self.name}: {traceback.format_exc()}"))


class _Peer:
    """One non-blocking session in a selector, talking to ``to``: what is left to send,
    and its scanners (a receiver uses ``inbox``, a sender ``results`` and ``runs``)."""

    def __init__(self, sock: socket.socket, sel: selectors.BaseSelector, to: str) -> None:
        self.sock = sock
        self.sel = sel
        self.to = to
        self.out = bytearray()
        self.events = READ
        self.inbox = Inbox()
        self.results = ResultCounter()
        self.runs = 0
        sock.setblocking(False)
        sel.register(sock, READ, self)

    def flush(self) -> None:
        """Send what the socket takes now; watch for writability while some is left."""
        if self.out:
            with contextlib.suppress(BlockingIOError):
                del self.out[: self.sock.send(self.out)]
        events = READ | WRITE if self.out else READ
        if events != self.events:
            self.sel.modify(self.sock, events, self)
            self.events = events

    def read(self) -> bytes:
        data = self.sock.recv(RECV_BYTES)
        if not data:
            raise ConnectionError(f"broker closed the stream of the session to {self.to}")
        return data


def _send(socks: list[socket.socket], job: XmppJob, tl: Timeline) -> Result:
    t0, _, t_end = tl
    runs = max(1, job.window // job.batch)
    sel = selectors.DefaultSelector()
    peers = [_Peer(sock, sel, receiver_jid(i)) for sock, i in zip(socks, job.pairs, strict=True)]
    blobs = [chat(p.to) * job.batch for p in peers]
    wait_until(t0)
    while time.monotonic_ns() < t_end:
        for peer, blob in zip(peers, blobs, strict=True):
            while peer.runs - peer.results.results < runs:
                peer.out += blob + ping(peer.to, f"b{peer.runs}")
                peer.runs += 1
            peer.flush()
        for key, events in sel.select(0.05):
            peer = key.data
            if events & READ:
                peer.results.feed(peer.read())
            if events & WRITE:
                peer.flush()
    return {
        "sent": sum(p.runs for p in peers) * job.batch,
        "acked": sum(p.results.results for p in peers) * job.batch,
    }


def _receive(socks: list[socket.socket], job: XmppJob, tl: Timeline) -> Result:
    """Count messages in ``[t_start, t_end)`` and answer pings.  A round that read little
    is followed by a short nap so data arrives in large reads (see the MQTT subscriber)."""
    _, t_start, t_end = tl
    sel = selectors.DefaultSelector()
    for sock, i in zip(socks, job.pairs, strict=True):
        _Peer(sock, sel, sender_jid(i))
    received = 0
    while time.monotonic_ns() < t_end:
        got = 0
        for key, events in sel.select(0.05):
            peer = key.data
            if events & READ:
                data = peer.read()
                got += len(data)
                count, ids = peer.inbox.feed(data)
                if t_start <= time.monotonic_ns() < t_end:
                    received += count
                for iq_id in ids:
                    peer.out += pong(peer.to, iq_id)
            peer.flush()
        if got < NAP_BELOW:
            time.sleep(NAP)
    return {"received": received, "latencies": []}


def _idle(job: XmppJob, conn: Connection) -> Result:
    """Log in ``job.logins``, report how many, drain until told to close, then reset
    every connection."""
    socks: list[socket.socket] = []
    for base in range(0, len(job.logins), LOGIN_GROUP):
        socks += login_all(job.port, job.logins[base : base + LOGIN_GROUP])
    conn.send(("ready", len(socks)))
    sel = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        sel.register(sock, READ)
    deadline = time.monotonic() + READY_TIMEOUT
    while not conn.poll(0) and time.monotonic() < deadline:
        for key, _ in sel.select(0.2):
            try:
                if not key.fileobj.recv(RECV_BYTES):  # type: ignore[union-attr]
                    raise ConnectionError("broker closed an idle session")
            except BlockingIOError:
                pass
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    return {"connected": len(socks)}
