"""XMPP ping (XEP-0199) both ways: the server answers pings to itself and to accounts, and
pings streams that have been quiet for a while, so dead links are found and closed.

``IdleTimer`` is the sans-I/O clock logic for one stream; the adapter tells it when bytes
arrive and when its deadline passes, on whatever monotonic clock it uses.
"""

from __future__ import annotations

import logging
import math
import secrets
from typing import TYPE_CHECKING

from lxml import etree

from broker.log import event
from protocols.xmpp.connection import XMPPConnection
from protocols.xmpp.session import Session
from protocols.xmpp.stanza import element, iq_result, serialize

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd

log = logging.getLogger("broker.xmpp")

NS_PING = "urn:xmpp:ping"


def install(front: XMPPFrontEnd) -> None:
    front.disco_features.add(NS_PING)
    front.account_features.add(NS_PING)
    front.server_iq[("get", f"{{{NS_PING}}}ping")] = _pong
    front.account_iq[("get", f"{{{NS_PING}}}ping")] = _pong


def _pong(session: Session, iq: etree._Element, ping: etree._Element) -> None:
    session.send(iq_result(iq))


class IdleTimer:
    """After ``interval`` seconds without input the stream gets a ping; after ``timeout``
    more without input it is closed with connection-timeout.  Any input counts as an
    answer: a stream that carries bytes is alive.  An interval of 0 never pings."""

    def __init__(self, conn: XMPPConnection, interval: float, timeout: float, now: float):
        self.conn = conn
        self.interval = interval
        self.timeout = timeout
        self.awaiting_answer = False
        self.deadline = math.inf
        self.input(now)

    def input(self, now: float) -> None:
        """Bytes arrived on the stream."""
        self.awaiting_answer = False
        self.deadline = now + self.interval if self.interval else math.inf

    def expired(self, now: float) -> None:
        """The deadline passed with no input: ping, or give up if a ping went unanswered."""
        conn = self.conn
        if conn.jid is None or conn.closing:
            return
        if self.awaiting_answer:
            event(log, logging.INFO, "xmpp ping timed out", peer=conn.peer, jid=str(conn.jid))
            conn.close("connection-timeout", "no answer to ping")
            return
        ping = element("iq", type="get", id=f"ping-{secrets.token_hex(4)}")
        ping.set("from", conn.domain)
        ping.set("to", str(conn.jid))
        etree.SubElement(ping, f"{{{NS_PING}}}ping", nsmap={None: NS_PING})
        conn.write(serialize(ping))
        self.awaiting_answer = True
        self.deadline = now + self.timeout
