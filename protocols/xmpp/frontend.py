"""The XMPP front end: bound sessions by JID, and the routing of RFC 6121 section 8.

Streams authenticate in ``XMPPConnection``; from then on every top-level element comes
here (``element``).  The front end binds resources, stamps senders, and routes stanzas:
to the server itself (IQs by payload, see ``server_iq`` and ``account_iq``), to a local account
(its resources, or the server on its behalf), or back as an error.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Protocol

from lxml import etree

from broker.core import Broker
from broker.log import event
from protocols.xmpp import (
    account_data,
    archive,
    blocking,
    carbons,
    csi,
    disco,
    offline,
    ping,
    pubsub,
    register,
    version,
)
from protocols.xmpp.archive import Archive
from protocols.xmpp.bridge import ExchangeBridge
from protocols.xmpp.connection import StreamSettings, XMPPConnection
from protocols.xmpp.framing import STREAM, Framing
from protocols.xmpp.jid import JID, InvalidJID, parse_jid
from protocols.xmpp.mam import ArchiveQueries
from protocols.xmpp.muc.service import MUCService
from protocols.xmpp.offline import OfflineStore
from protocols.xmpp.presence import PresenceService
from protocols.xmpp.session import Session
from protocols.xmpp.sm import StreamManager
from protocols.xmpp.stanza import (
    IQ,
    MESSAGE,
    PRESENCE,
    error_reply,
    iq_result,
    local_name,
    serialize,
)
from protocols.xmpp.stream import NS_CLIENT, StreamError

log = logging.getLogger("broker.xmpp")

NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
#: requests of the server's own awaiting an answer, at most (see ``request``)
MAX_PENDING_REQUESTS = 10_000

#: (session, iq, payload): answer with session.send(iq_result(...)) or an error
IQHandler = Callable[[Session, etree._Element, etree._Element], None]
#: (connection, its bound session if any, element): a nonza such as XEP-0198's <r/>
NonzaHandler = Callable[[XMPPConnection, Session | None, etree._Element], None]
#: (the session that answered, its result or error iq): see ``XMPPFrontEnd.request``
AnswerHandler = Callable[[Session, etree._Element], None]


class Component(Protocol):
    """A service on its own subdomain (``conference.<domain>``, ``pubsub.<domain>``...):
    every stanza addressed to the subdomain or a JID on it is handed over whole."""

    def stanza(self, session: Session, el: etree._Element, to: JID) -> None:
        """A stanza from ``session`` (its 'from' stamped) to ``to`` on the subdomain."""

    def unavailable(self, session: Session) -> None:
        """The session went unavailable or ended: it leaves whatever it joined."""


class XMPPFrontEnd:
    def __init__(self, broker: Broker, settings: StreamSettings, tls_available: bool) -> None:
        self.broker = broker
        #: messages routed and delivered, for /metrics
        self.counts = broker.stats.protocol("xmpp")
        self.settings = settings
        self.domain = settings.domain
        self.tls_available = tls_available
        self.connections: set[XMPPConnection] = set()
        #: bare JID -> resource -> session
        self.sessions: dict[JID, dict[str, Session]] = {}
        self._by_conn: dict[XMPPConnection, Session] = {}
        #: IQs the server answers itself (to the domain), by (type, payload tag)
        self.server_iq: dict[tuple[str, str], IQHandler] = {}
        #: IQs the server answers for an account (to a bare JID or no 'to'), likewise
        self.account_iq: dict[tuple[str, str], IQHandler] = {}
        #: extra stream features after authentication, in order
        self.feature_hooks: list[Callable[[XMPPConnection], str]] = []
        #: what disco#info lists for the server and for accounts, and the server's
        #: disco#items (component JID -> name): modules add what they implement
        self.disco_features: set[str] = set()
        self.account_features: set[str] = set()
        #: identities of accounts beside account/registered (PEP's pubsub/pep)
        self.account_identities: list[tuple[str, str, str]] = []
        self.disco_items: dict[str, str] = {}
        #: services on subdomains, by domain (see ``Component``)
        self.components: dict[str, Component] = {}
        #: callbacks for the answers to the server's own requests, by iq id
        self._requests: dict[str, tuple[JID, AnswerHandler]] = {}
        disco.install(self)
        ping.install(self)
        version.install(self)
        self.account_data = account_data.install(self)
        self.blocking = blocking.install(self)
        self.registration = register.install(self)
        self.on_idle: Callable[[], None] | None = None
        self.server_iq[("set", f"{{{NS_SESSION}}}session")] = _session_established
        self.presence = PresenceService(self)
        #: called with every presence a session sends, after it was routed
        self.presence_observers: list[Callable[[Session, etree._Element], None]] = []
        #: top-level elements other than stanzas, by qualified tag
        self.nonzas: dict[str, NonzaHandler] = {}
        self.sm = StreamManager(self, settings.resume_timeout)
        csi.install(self)
        self.offline = OfflineStore(broker.store, broker.take_kv(offline.PREFIX), self.domain)
        self.archive = Archive(broker.store, broker.take_kv(archive.PREFIX))
        ArchiveQueries(self.archive).install(self)
        carbons.install(self)
        self.exchange_bridge = ExchangeBridge(self)
        self.pubsub, self.pep = pubsub.install(self)
        self.components[f"conference.{self.domain}"] = MUCService(self)

    # --- connections -----------------------------------------------------------------

    def connection(
        self, *, peer: str, peer_loopback: bool, secure: bool, framing: Framing = STREAM
    ) -> XMPPConnection:
        conn = XMPPConnection(
            self.settings,
            self.broker.users,
            self,
            peer=peer,
            peer_loopback=peer_loopback,
            tls_available=self.tls_available,
            secure=secure,
            framing=framing,
        )
        self.connections.add(conn)
        return conn

    def features(self, conn: XMPPConnection) -> str:
        features = ""
        if conn.jid is None:
            features += (
                f"<bind xmlns='{NS_BIND}'/><session xmlns='{NS_SESSION}'><optional/></session>"
            )
        return features + "".join(hook(conn) for hook in self.feature_hooks)

    def pre_auth_features(self, conn: XMPPConnection) -> str:
        return self.registration.features(conn)

    def pre_auth_iq(self, conn: XMPPConnection, iq: etree._Element) -> None:
        self.registration.pre_auth_iq(conn, iq)

    def end_of_input(self) -> None:
        """After a read's stanzas are handled: what they archived goes to the store."""
        self.archive.flush()

    def lost(self, conn: XMPPConnection) -> None:
        self.connections.discard(conn)
        session = self._by_conn.pop(conn, None)
        if session is not None and not self.sm.hibernates(conn, session):
            self.unbind(session)
            self.sm.hand_on_unacked(session)
        if conn.username is not None and conn.counted:
            self.broker.release_connection(conn.username)
            conn.counted = False
        if not self.connections and self.on_idle is not None:
            self.on_idle()

    # --- binding ---------------------------------------------------------------------

    def local_jid(self, username: str) -> JID:
        return JID(username.lower(), self.domain, "")

    def _bind(self, conn: XMPPConnection, iq: etree._Element, bind: etree._Element) -> None:
        assert conn.username is not None
        requested = bind.findtext(f"{{{NS_BIND}}}resource") or ""
        resource = requested.strip() or secrets.token_hex(6)
        try:
            jid = parse_jid(f"{self.local_jid(conn.username)}/{resource}")
        except InvalidJID:
            conn.write(serialize(error_reply(iq, "bad-request", "invalid resource")))
            return
        if not conn.counted:
            if not self.broker.claim_connection(conn.username):
                conn.write(serialize(error_reply(iq, "resource-constraint", "too many sessions")))
                return
            conn.counted = True
        existing = self.sessions.get(jid.bare, {}).get(jid.resource)
        if existing is not None:  # the newer session wins, as Prosody and ejabberd do
            existing.conn.close("conflict", "replaced by a new connection")
            self.sm.expire(existing.conn)  # a hibernating one ends now (XEP-0198)
        session = Session(conn, jid, conn.username)
        conn.jid = jid
        self.sessions.setdefault(jid.bare, {})[jid.resource] = session
        self._by_conn[conn] = session
        result = etree.Element(f"{{{NS_BIND}}}bind", nsmap={None: NS_BIND})
        etree.SubElement(result, f"{{{NS_BIND}}}jid").text = str(jid)
        session.send(iq_result(iq, result))
        event(log, logging.DEBUG, "xmpp bound", peer=conn.peer, jid=str(jid))

    def take_over(self, session: Session, conn: XMPPConnection) -> None:
        """A resumed session (XEP-0198) goes on over ``conn``, its new stream."""
        self._by_conn.pop(session.conn, None)
        session.conn = conn
        conn.jid = session.jid
        self._by_conn[conn] = session

    def unbind(self, session: Session) -> None:
        """The session's resource goes away (stream closed, lost or replaced)."""
        resources = self.sessions.get(session.bare)
        if resources is not None and resources.get(session.jid.resource) is session:
            del resources[session.jid.resource]
            if not resources:
                del self.sessions[session.bare]
        self.presence.gone(session)
        for component in self.components.values():
            component.unavailable(session)

    def resources(self, bare: JID) -> list[Session]:
        return list(self.sessions.get(bare, {}).values())

    def user_exists(self, jid: JID) -> bool:
        return jid.domain == self.domain and self.broker.users.get(jid.local) is not None

    # --- stanzas ---------------------------------------------------------------------

    def element(self, conn: XMPPConnection, el: etree._Element) -> None:
        session = self._by_conn.get(conn)
        nonza = self.nonzas.get(el.tag)
        if nonza is not None:
            nonza(conn, session, el)
            return
        if session is None:
            bind = el.find(f"{{{NS_BIND}}}bind") if el.tag == IQ else None
            if bind is not None and el.get("type") == "set":
                self._bind(conn, el, bind)
                return
            raise StreamError("not-authorized", "bind a resource first")
        tag = el.tag
        if tag not in (MESSAGE, PRESENCE, IQ):
            if etree.QName(el).namespace == NS_CLIENT:
                raise StreamError("unsupported-stanza-type", local_name(el))
            raise StreamError("unsupported-stanza-type", tag)
        if session.sm is not None:
            session.sm.received()
        self._stamp(session, el)
        if self.components and self._to_component(session, el):
            return
        if tag == MESSAGE:
            self.route_message(session, el)
        elif tag == PRESENCE:
            self.route_presence(session, el)
        else:
            self.route_iq(session, el)

    def _stamp(self, session: Session, el: etree._Element) -> None:
        """Set 'from' to the sender's full JID; a different one is a forgery (RFC 6120
        8.1.2.1: the invalid-from stream error)."""
        claimed = el.get("from")
        if claimed is not None:
            try:
                jid = parse_jid(claimed)
            except InvalidJID:
                raise StreamError("invalid-from", claimed) from None
            if jid != session.jid and jid != session.bare:
                raise StreamError("invalid-from", claimed)
        el.set("from", session.jid_text)

    def _to_component(self, session: Session, el: etree._Element) -> bool:
        """Hand a stanza for a subdomain to its component; True if it was one's."""
        to = el.get("to")
        if to is None:
            if el.tag == PRESENCE and el.get("type") == "unavailable":
                for component in self.components.values():
                    component.unavailable(session)
            return False
        try:
            jid = parse_jid(to)
        except InvalidJID:
            return False  # routing answers jid-malformed
        component = self.components.get(jid.domain)
        if component is None:
            return False
        if not self.blocking.refuses(session, el):
            component.stanza(session, el, jid)
        return True

    def request(self, session: Session, iq: etree._Element, answered: AnswerHandler) -> None:
        """Send the server's own get/set ``iq`` to ``session`` and call ``answered`` with
        the result or error that comes back (e.g. disco#info of a client's caps)."""
        iq_id = iq.get("id") or secrets.token_hex(6)
        iq.set("id", iq_id)
        if len(self._requests) >= MAX_PENDING_REQUESTS:  # unanswered ones age out
            del self._requests[next(iter(self._requests))]
        self._requests[iq_id] = (session.jid, answered)
        session.send(iq)

    def send_to(self, to: JID, data: bytes) -> int:
        """A stanza from a component or the server to a local full JID, or to every
        available resource of a bare one; how many resources got it."""
        if to.resource:
            target = self.sessions.get(to.bare, {}).get(to.resource)
            targets = [target] if target is not None else []
        else:
            targets = [s for s in self.sessions.get(to.bare, {}).values() if s.available]
        for target in targets:
            target.send(data)
        return len(targets)

    def recipient(self, session: Session, el: etree._Element) -> JID | None:
        """The stanza's 'to' (the sender's bare JID if none); None after answering a
        malformed one with jid-malformed (an error is never answered)."""
        to = el.get("to")
        if to is None:
            return session.bare
        try:
            return parse_jid(to)
        except InvalidJID:
            if el.get("type") != "error":
                session.send(error_reply(el, "jid-malformed"))
            return None

    def route_message(self, session: Session, el: etree._Element) -> None:
        self.counts.messages_in += 1
        if self.blocking.refuses(session, el):
            return
        to = self.recipient(session, el)
        if to is None:
            return
        if to.domain != self.domain:
            self._remote(session, el)
        elif not to.local:
            return  # messages to the server itself are not for anyone
        elif not self.user_exists(to):
            if el.get("type") != "error":
                session.send(error_reply(el, "service-unavailable"))
        else:
            self.deliver_message(to, el, session.serialize(el), sender=session)

    def deliver_message(
        self, to: JID, el: etree._Element, data: bytes, sender: Session | None = None
    ) -> None:
        """RFC 6121 8.5 for a local account: the full JID's resource if it is online;
        otherwise, for chat and normal, the bare JID's most available resources (offline
        storage, XEP-0160, when there are none); headlines and groupchat to nobody are
        dropped.  One-to-one messages are also archived for both parties (XEP-0313; the
        recipient's copy carries its stanza-id) and copied to the carbons-enabled
        resources of both (XEP-0280)."""
        kind = el.get("type", "normal")
        full = self.sessions.get(to.bare, {}).get(to.resource) if to.resource else None
        if full is not None:
            targets = [full]
        elif to.resource and kind not in ("chat", "normal"):
            targets = []
        elif kind == "error":
            return
        else:
            targets = self.most_available(to.bare)
        one_to_one = kind in ("chat", "normal")
        if sender is not None and one_to_one:
            carbons.copy_sent(self, sender, el, data)
        if one_to_one and archive.archivable(el):
            data = self.archive.keep_message(to, el, data, sender)
        if targets:
            self.counts.messages_out += len(targets)
            for target in targets:
                target.send(data)
            if one_to_one:
                carbons.copy_received(self, to, el, data, targets)
        elif one_to_one:
            if not self.offline.keep(to.local, el, data) and sender is not None:
                sender.send(error_reply(el, "service-unavailable", "offline storage is full"))
        elif kind == "groupchat" and sender is not None:
            sender.send(error_reply(el, "service-unavailable"))

    def most_available(self, bare: JID) -> list[Session]:
        """The available resources of non-negative priority that share the highest one."""
        candidates = [s for s in self.sessions.get(bare, {}).values() if s.available]
        candidates = [s for s in candidates if s.priority >= 0]
        if not candidates:
            return []
        top = max(s.priority for s in candidates)
        return [s for s in candidates if s.priority == top]

    def route_presence(self, session: Session, el: etree._Element) -> None:
        if self.blocking.refuses(session, el):
            return
        self.presence.route(session, el)
        self.offline.hand_over(session)
        for observer in self.presence_observers:
            observer(session, el)

    def route_iq(self, session: Session, iq: etree._Element) -> None:
        if self.blocking.refuses(session, iq):
            return
        kind = iq.get("type")
        if kind not in ("get", "set", "result", "error") or iq.get("id") is None:
            session.send(error_reply(iq, "bad-request", "iq needs an id and a type"))
            return
        to = self.recipient(session, iq)
        if to is None:
            return
        if to.domain != self.domain:
            self._remote(session, iq)
            return
        if to.resource:
            target = self.sessions.get(to.bare, {}).get(to.resource)
            if target is not None:
                target.send(session.serialize(iq))
            elif kind in ("get", "set"):
                session.send(error_reply(iq, "service-unavailable"))
            return
        if kind in ("result", "error"):
            pending = self._requests.get(iq.get("id", ""))
            if pending is not None and pending[0] == session.jid:
                del self._requests[iq.get("id", "")]
                pending[1](session, iq)
            return  # answers to the server's other requests (pings) need nothing more
        table = self.server_iq if not to.local else self.account_iq
        if to.local and not self.user_exists(to):
            session.send(error_reply(iq, "service-unavailable"))
            return
        if len(iq) != 1:
            session.send(error_reply(iq, "bad-request", "an iq carries one payload"))
            return
        payload = iq[0]
        handler = table.get((kind, payload.tag))
        if handler is None:
            session.send(error_reply(iq, "service-unavailable"))
            return
        handler(session, iq, payload)

    def _remote(self, session: Session, el: etree._Element) -> None:
        """No server-to-server links: stanzas to other domains bounce."""
        if el.get("type") not in ("error", "result"):
            session.send(error_reply(el, "remote-server-not-found"))


def _session_established(session: Session, iq: etree._Element, payload: etree._Element) -> None:
    """RFC 3921 session establishment, still sent by older clients: a no-op."""
    session.send(iq_result(iq))
