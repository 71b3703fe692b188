"""Stream management (XEP-0198): acks both ways and resumption of a lost stream.

A client enables it after binding; from then on ``Session.write`` counts and queues every
stanza (see ``sm_state``).  A stream lost without ``</stream:stream>`` leaves its session
hibernating: still bound, still receiving (into the queue), until a new stream of the
same user resumes it with ``<resume previd=…/>`` or the resume timeout passes.  A session
that ends for good hands its unacked stanzas on as if they had been sent to a resource
that went away: messages go to the account's other resources or offline storage, IQ
requests bounce, the rest is dropped (XEP-0198 section 5).
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

from lxml import etree

from broker.log import event
from protocols.xmpp.connection import XMPPConnection
from protocols.xmpp.jid import InvalidJID, parse_jid
from protocols.xmpp.session import Session
from protocols.xmpp.sm_state import NS_SM, REQUEST, AckOutOfRange, StreamState
from protocols.xmpp.stanza import IQ, MESSAGE, NS_STANZAS, error_reply
from protocols.xmpp.stream import NS_CLIENT, StreamError

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd

log = logging.getLogger("broker.xmpp")


class StreamManager:
    """The front end's XEP-0198 part: the feature, the nonzas, and the sessions that a
    new stream may resume, by stream management id."""

    def __init__(self, front: XMPPFrontEnd, resume_timeout: int) -> None:
        self.front = front
        self.resume_timeout = resume_timeout
        self.resumable: dict[str, Session] = {}
        #: lost streams whose session hibernates, until the adapter picks them up
        self._lost: dict[XMPPConnection, Session] = {}
        front.feature_hooks.append(lambda conn: f"<sm xmlns='{NS_SM}'/>")
        for name, handler in (
            ("enable", self._enable),
            ("resume", self._resume),
            ("r", self._request),
            ("a", self._ack),
        ):
            front.nonzas[f"{{{NS_SM}}}{name}"] = handler

    # --- nonzas ----------------------------------------------------------------------

    def _enable(self, conn: XMPPConnection, session: Session | None, el: etree._Element) -> None:
        if session is None or session.sm is not None:
            conn.write(_failed("unexpected-request"))
            return
        resumable = el.get("resume") in ("true", "1")
        timeout = self.resume_timeout
        if (asked := _number(el.get("max"))) is not None and asked > 0:
            timeout = min(timeout, asked)
        state = StreamState(secrets.token_urlsafe(18), resumable=resumable, timeout=timeout)
        session.sm = state
        if resumable:
            self.resumable[state.id] = session
            conn.write(
                f"<enabled xmlns='{NS_SM}' id='{state.id}' resume='true' max='{timeout}'/>".encode()
            )
        else:
            conn.write(f"<enabled xmlns='{NS_SM}'/>".encode())

    def _request(self, conn: XMPPConnection, session: Session | None, el: etree._Element) -> None:
        """``<r/>``: the answer leaves once the store has synced what it covers (SPEC)."""
        conn.write(_managed(session).answer())
        conn.sync_before_output = True

    def _ack(self, conn: XMPPConnection, session: Session | None, el: etree._Element) -> None:
        _acknowledge(_managed(session), el.get("h"))

    def _resume(self, conn: XMPPConnection, session: Session | None, el: etree._Element) -> None:
        assert conn.username is not None
        if session is not None:
            conn.write(_failed("unexpected-request"))
            return
        previous = self.resumable.get(el.get("previd", ""))
        if previous is None or previous.bare != self.front.local_jid(conn.username):
            conn.write(_failed("item-not-found"))
            return
        if not conn.counted:
            if not self.front.broker.claim_connection(conn.username):
                conn.write(_failed("resource-constraint"))
                return
            conn.counted = True
        state = previous.sm
        assert state is not None
        _acknowledge(state, el.get("h"))
        old = previous.conn
        self.front.take_over(previous, conn)
        self._lost.pop(old, None)
        state.awake()
        state.request_outstanding = False
        old.close("conflict", "the session was resumed on another stream")
        conn.write(f"<resumed xmlns='{NS_SM}' previd='{state.id}' h='{state.handled}'/>".encode())
        conn.sync_before_output = True
        for data in list(state.unacked):
            conn.write(data)
        if state.unacked:
            conn.write(REQUEST)
            state.request_outstanding = True
        event(log, logging.DEBUG, "xmpp stream resumed", peer=conn.peer, jid=str(previous.jid))

    # --- the end of a stream ---------------------------------------------------------

    def hibernates(self, conn: XMPPConnection, session: Session) -> bool:
        """The stream of ``session`` is lost: keep the session for a resumption if it is
        resumable and the stream broke off (no ``</stream:stream>``, no stream error)."""
        state = session.sm
        broke_off = not conn.parser.closed and conn.stream_error is None
        if state is None or not state.resumable or not broke_off:
            return False
        state.hibernating = True
        self._lost[conn] = session
        event(log, logging.DEBUG, "xmpp session hibernates", jid=str(session.jid))
        return True

    def hibernated(self, conn: XMPPConnection) -> StreamState | None:
        """The state of the session that ``conn``'s loss left hibernating, for the
        adapter to wait on (``StreamState.wake``, ``timeout``); then ``expire``."""
        session = self._lost.get(conn)
        return None if session is None else session.sm

    def expire(self, conn: XMPPConnection) -> None:
        """End the hibernation of ``conn``'s session, if any and not resumed: its queue
        overflowed, its timeout passed, or a new stream bound its resource."""
        session = self._lost.pop(conn, None)
        if session is None or session.sm is None or not session.sm.hibernating:
            return
        session.sm.awake()
        event(log, logging.INFO, "xmpp session ended without resumption", jid=str(session.jid))
        self.front.unbind(session)
        self.hand_on_unacked(session)

    def hand_on_unacked(self, session: Session) -> None:
        """The session has ended: treat its unacked stanzas as sent to a resource that is
        gone (RFC 6121 8.5.3.2): messages to the account's other resources or offline
        storage, IQ requests answered with an error, presence dropped."""
        state = session.sm
        if state is None:
            return
        self.resumable.pop(state.id, None)
        pending = list(state.unacked)
        state.unacked.clear()
        for data in pending:
            el = etree.fromstring(data)
            if el.tag == MESSAGE and _worth_redelivering(el):
                self._redeliver(session, el, data)
            elif el.tag == IQ and el.get("type") in ("get", "set"):
                self._bounce(el)

    def _redeliver(self, session: Session, el: etree._Element, data: bytes) -> None:
        """A message the ended session never acked goes to the account's most available
        resources, else to offline storage.  Not ``deliver_message``: it was archived and
        carbon-copied when it first arrived."""
        targets = self.front.most_available(session.bare)
        for target in targets:
            target.send(data)
        if not targets and not self.front.offline.keep(session.bare.local, el, data):
            self._bounce(el)

    def _bounce(self, stanza: etree._Element) -> None:
        """Return a stanza the ended session never handled to its sender, if local."""
        try:
            sender = parse_jid(stanza.get("from", ""))
        except InvalidJID:
            return
        target = self.front.sessions.get(sender.bare, {}).get(sender.resource)
        if target is not None:
            target.send(error_reply(stanza, "service-unavailable"))


def _managed(session: Session | None) -> StreamState:
    if session is None or session.sm is None:
        raise StreamError("unsupported-stanza-type", "stream management is not enabled")
    return session.sm


def _acknowledge(state: StreamState, h: str | None) -> None:
    number = _number(h)
    try:
        if number is None:
            raise AckOutOfRange(f"h={h!r} is not a sequence number")
        state.acked(number)
    except AckOutOfRange as exc:
        raise StreamError("undefined-condition", str(exc)) from None


def _number(text: str | None) -> int | None:
    if text is None or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value < 1 << 32 else None


def _failed(condition: str) -> bytes:
    return f"<failed xmlns='{NS_SM}'><{condition} xmlns='{NS_STANZAS}'/></failed>".encode()


def _worth_redelivering(el: etree._Element) -> bool:
    """A chat or normal message with a body of its own (so no carbon copy or archive
    result: those wrap theirs), as RFC 6121 8.5.3.2.1 redirects to the bare JID."""
    if el.get("type", "normal") not in ("chat", "normal"):
        return False
    return el.find(f"{{{NS_CLIENT}}}body") is not None
