"""The idle timer that pings quiet streams and closes those that stay silent."""

from __future__ import annotations

import math

from broker.auth import UserDB
from protocols.xmpp.connection import StreamSettings, XMPPConnection
from protocols.xmpp.jid import JID
from protocols.xmpp.ping import IdleTimer


class _Handler:
    def features(self, conn: XMPPConnection) -> str:
        return ""

    def element(self, conn: XMPPConnection, el: object) -> None:
        pass

    def lost(self, conn: XMPPConnection) -> None:
        pass

    def pre_auth_features(self, conn: XMPPConnection) -> str:
        return ""

    def pre_auth_iq(self, conn: XMPPConnection, iq: object) -> None:
        pass


def _bound_connection() -> XMPPConnection:
    conn = XMPPConnection(
        StreamSettings("localhost"),
        UserDB(),
        _Handler(),
        peer="127.0.0.1:1",
        peer_loopback=True,
        tls_available=False,
    )
    conn.header_sent = True
    conn.username = "alice"
    conn.jid = JID("alice", "localhost", "desk")
    return conn


def test_quiet_stream_is_pinged_then_closed() -> None:
    conn = _bound_connection()
    timer = IdleTimer(conn, interval=60, timeout=30, now=0)
    assert timer.deadline == 60
    timer.expired(60)
    assert b'<ping xmlns="urn:xmpp:ping"/>' in conn.outbox
    assert b'to="alice@localhost/desk"' in conn.outbox
    assert timer.deadline == 90 and not conn.closing
    timer.expired(90)
    assert conn.closing
    assert b"connection-timeout" in conn.outbox


def test_input_counts_as_an_answer() -> None:
    conn = _bound_connection()
    timer = IdleTimer(conn, interval=60, timeout=30, now=0)
    timer.expired(60)
    timer.input(70)
    assert timer.deadline == 130 and not timer.awaiting_answer
    timer.expired(130)
    assert not conn.closing


def test_interval_zero_never_pings() -> None:
    timer = IdleTimer(_bound_connection(), interval=0, timeout=30, now=0)
    assert timer.deadline == math.inf
