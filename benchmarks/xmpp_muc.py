"""Group chat fan-out (XEP-0045), compared with Prosody (mod_muc) and ejabberd (mod_muc).

One room on ``conference.localhost`` with 50 occupants, accounts ``muc0``..``muc49``
joined under their account names; the first 5 send.  Before the run an owner account
creates the room as a persistent instant room (join, then an empty-but-for-persistence
configuration form) and leaves, so every server holds the same room with its defaults
otherwise.  A sender streams pre-encoded runs of groupchat messages and keeps at most
``WINDOW`` of its own messages not yet reflected back to it (a room reflects every message
to its sender too, after handing it to the others), so it never overruns the server.
Every occupant, senders included, counts ``</message>`` in whole reads; the figure is
deliveries per second.

Target from the group chat issue, on the same run: at least 1.0x ejabberd's deliveries
and 2.0x Prosody's.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from benchmarks.brokers import Broker
from benchmarks.loadgen import (
    NAP,
    NAP_BELOW,
    RECV_BYTES,
    Result,
    measured,
    start_signal,
    wait_until,
)
from benchmarks.measure import THROUGHPUT_INFO, Figures, Metric, Scenario, Settings, Target, flow
from benchmarks.xmppwire import BODY, DOMAIN, Inbox, Login, _Conversation, login_all

ROOM = f"bench@conference.{DOMAIN}"
OCCUPANTS = 50
SENDERS = 5
OWNER = "mucowner"
RECEIVER_WORKERS = 2
#: a sender's own messages sent and not yet reflected, at most; messages per write
WINDOW = 200
BATCH = 20
NS_MUC = "http://jabber.org/protocol/muc"

_SELF = re.compile(rb"<status code=['\"]110['\"]")
_SUBJECT = re.compile(rb"<subject[ />]")
_CONFIGURED = re.compile(rb"id=['\"]bench-config['\"]")
_LEFT = re.compile(rb"type=['\"]unavailable['\"]")


def occupant(n: int) -> str:
    return f"muc{n}"


def accounts(s: Settings) -> list[str]:
    return [OWNER] + [occupant(n) for n in range(OCCUPANTS)]


def _join(nick: str) -> bytes:
    """Join presence asking for no history."""
    return (
        f"<presence to='{ROOM}/{nick}'><x xmlns='{NS_MUC}'><history maxchars='0'/></x></presence>"
    ).encode()


def groupchat(body: str = BODY) -> bytes:
    return f"<message type='groupchat' to='{ROOM}'><body>{body}</body></message>".encode()


def create_room(port: int) -> None:
    """The owner creates ``ROOM`` persistent (every server lets a local user), then
    leaves it."""
    (sock,) = login_all(port, [Login(OWNER, "setup")], presence=False)
    try:
        talk = _Conversation(sock)
        sock.sendall(_join(OWNER))
        talk.expect(_SELF)
        form = (
            f"<iq type='set' id='bench-config' to='{ROOM}'>"
            f"<query xmlns='{NS_MUC}#owner'><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value>"
            "</field><field var='muc#roomconfig_persistentroom'><value>1</value></field>"
            "</x></query></iq>"
        )
        sock.sendall(form.encode())
        talk.expect(_CONFIGURED)
        sock.sendall(f"<presence type='unavailable' to='{ROOM}/{OWNER}'/>".encode())
        talk.expect(_LEFT)
    finally:
        sock.close()


@dataclass
class MucJob:
    """One worker's occupants: they join, then count what the room sends them; those
    of ``senders`` also send."""

    port: int
    name: str
    occupants: list[int] = field(default_factory=list)
    senders: list[int] = field(default_factory=list)

    def run(self, conn: Connection) -> None:
        try:
            socks = login_all(self.port, [Login(occupant(n), "m") for n in self.occupants])
            for sock, n in zip(socks, self.occupants, strict=True):
                talk = _Conversation(sock)
                sock.sendall(_join(occupant(n)))
                talk.expect(_SELF)
                talk.expect(_SUBJECT)
            tl = start_signal(conn)
            result = measured(lambda: _occupy(socks, self, tl))
            conn.send(("result", result))
            for sock in socks:
                sock.close()
        except Exception:
            conn.send(("error", f"{self.name}: {traceback.format_exc()}"))


class _Seat:
    """One occupant's socket: what is left to send, and its counters."""

    def __init__(self, sock: socket.socket, nick: str, sender: bool) -> None:
        self.sock = sock
        self.inbox = Inbox()
        self.out = bytearray()
        self.sender = sender
        #: how the room names this occupant in 'from', with either quote
        self.own = (f"/{nick}'".encode(), f'/{nick}"'.encode())
        self.tail = b""
        self.sent = 0
        self.reflected = 0
        sock.setblocking(False)

    def count_own(self, data: bytes) -> None:
        buf = self.tail + data
        self.reflected += buf.count(self.own[0]) + buf.count(self.own[1])
        self.tail = buf[-len(self.own[0]) + 1 :]


def _occupy(socks: list[socket.socket], job: MucJob, tl: tuple[int, int, int]) -> Result:
    t0, t_start, t_end = tl
    sel = selectors.DefaultSelector()
    seats = []
    for sock, n in zip(socks, job.occupants, strict=True):
        seat = _Seat(sock, occupant(n), n in job.senders)
        sel.register(sock, selectors.EVENT_READ, seat)
        seats.append(seat)
    run = groupchat() * BATCH
    wait_until(t0)
    received = 0
    while time.monotonic_ns() < t_end:
        for seat in seats:
            if seat.sender:
                while seat.sent - seat.reflected + BATCH <= WINDOW:
                    seat.out += run
                    seat.sent += BATCH
                if seat.out:
                    with contextlib.suppress(BlockingIOError):
                        del seat.out[: seat.sock.send(seat.out)]
        got = 0
        for key, _ in sel.select(0.05):
            seat = key.data
            data = seat.sock.recv(RECV_BYTES)
            if not data:
                raise ConnectionError("the server closed an occupant's stream")
            got += len(data)
            count, _ = seat.inbox.feed(data)
            if seat.sender:
                seat.count_own(data)
            if t_start <= time.monotonic_ns() < t_end:
                received += count
        if got < NAP_BELOW and not any(s.sender for s in seats):
            time.sleep(NAP)
    return {"received": received, "sent": sum(s.sent for s in seats), "latencies": []}


def fan_out(b: Broker, s: Settings) -> Figures:
    """50 occupants, 5 of them sending: groupchat deliveries/s."""
    create_room(b.xmpp_port)
    everyone = list(range(OCCUPANTS))
    senders = everyone[:SENDERS]
    rest = everyone[SENDERS:]
    receivers = [
        MucJob(b.xmpp_port, f"occupants{n}", rest[n::RECEIVER_WORKERS])
        for n in range(RECEIVER_WORKERS)
    ]
    talkers = [MucJob(b.xmpp_port, "senders", senders, senders)]
    sub_res, pub_res, cpu = flow(b, receivers, talkers, s)
    received = sum(r["received"] for r in sub_res + pub_res)
    return {
        "rate": received / s.duration,
        "cpu_us": 1e6 * cpu / max(1, received),
        "broker_cpu_pct": 100 * cpu / s.duration,
        "loadgen_cpu_pct": 100 * sum(r["cpu"] for r in sub_res + pub_res),
    }


SCENARIOS: dict[str, Scenario] = {
    "xmpp-muc": Scenario(
        fan_out,
        [
            Metric(
                "rate",
                "room of 50, 5 senders: deliveries/s",
                "higher",
                (Target("ratio", 2.0, peer="prosody"), Target("ratio", 1.0, peer="ejabberd")),
            ),
            Metric("cpu_us", "broker CPU µs/delivery", "lower"),
            *THROUGHPUT_INFO,
        ],
        peers=("prosody", "ejabberd"),
        protocols=("xmpp",),
        accounts=accounts,
    ),
}
