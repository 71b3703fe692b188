"""Presence (RFC 6121 sections 3 and 4): subscriptions, broadcast, probes, directed
presence, and the unavailable presence of a resource that goes away.

Every account lives on this server, so each subscription stanza is handled twice in one
go: as the sender's outbound stanza on the sender's roster, then as an inbound one on the
recipient's (``subscription.outbound``/``inbound``).  Stanzas for other domains are
dropped (there are no server-to-server links), and so are those for accounts that do not
exist (RFC 6121 8.5.1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lxml import etree

from protocols.xmpp.jid import JID, parse_jid
from protocols.xmpp.roster import KV_PREFIX, NS_ROSTERVER, QUERY, RosterBook, RosterService
from protocols.xmpp.session import Session
from protocols.xmpp.stanza import element, error_reply, serialize
from protocols.xmpp.stream import NS_CLIENT
from protocols.xmpp.subscription import KINDS, Kind, State, inbound, outbound

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd

NS_PREAPPROVAL = "urn:xmpp:features:pre-approval"
FEATURES = f"<ver xmlns='{NS_ROSTERVER}'/><sub xmlns='{NS_PREAPPROVAL}'/>"


class PresenceService:
    """Rosters and presence for one front end; installs the roster IQs and the stream
    features it offers (roster versioning, subscription pre-approval)."""

    def __init__(self, front: XMPPFrontEnd) -> None:
        self.front = front
        self.book = RosterBook(front.broker.store, front.broker.take_kv(KV_PREFIX))
        self.roster = RosterService(self.book, front.resources, self._removed)
        front.account_iq[("get", QUERY)] = self.roster.get
        front.account_iq[("set", QUERY)] = self.roster.set
        front.feature_hooks.append(lambda conn: FEATURES)

    # --- from the client -------------------------------------------------------------

    def route(self, session: Session, el: etree._Element) -> None:
        """A presence stanza the session sent (its 'from' stamped already)."""
        el = _standalone(el)
        kind = el.get("type")
        if kind in KINDS:
            self._subscription(session, el, kind)
        elif kind == "probe":
            if (to := self._recipient(session, el)) is not None:
                self._answer_probe(session.bare, to.bare, session.jid)
        elif kind == "error":
            self._error(session, el)
        elif kind not in (None, "unavailable"):
            session.send(error_reply(el, "bad-request", "unknown presence type"))
        elif el.get("to") is None:
            self._broadcast(session, el)
        else:
            self._directed(session, el)

    def gone(self, session: Session) -> None:
        """The session ended without going unavailable itself (logout, lost connection,
        replaced): its contacts and directed-presence recipients learn it is gone."""
        if session.available or session.directed:
            self._broadcast(session, _presence("unavailable", session.jid))

    # --- broadcast presence (RFC 6121 4.2, 4.4, 4.5) ---------------------------------

    def _broadcast(self, session: Session, el: etree._Element) -> None:
        available = el.get("type") is None
        initial = available and not session.available
        if session.available or available:
            session.available = available
            session.priority = _priority(el)
            session.presence = serialize(el) if available else None
            roster = self.book.get(session.bare.local)
            subscribers = set(roster.subscribers())
            for contact in subscribers:
                self._deliver(el, contact)
            self._deliver(el, session.bare)  # the user's own resources, this one too
        else:
            subscribers = set()
        if not available:
            for target in session.directed:
                if target.bare not in subscribers:
                    self._deliver(el, target)
            session.directed.clear()
        if initial:
            self._arrived(session)

    def _arrived(self, session: Session) -> None:
        """Initial presence: the session learns its contacts' and its other resources'
        presence (probes), and gets the subscription requests waiting for an answer."""
        roster = self.book.get(session.bare.local)
        for contact in roster.subscriptions():
            self._answer_probe(session.bare, contact, session.jid)
        for other in self.front.resources(session.bare):
            if other is not session and other.available:
                self._send_presence_of(other, session.jid)
        for request in roster.requests.values():
            session.send(request)

    def _answer_probe(self, user: JID, contact: JID, to: JID) -> None:
        """The contact's presence, one stanza per available resource, if ``user`` is
        subscribed to it; an offline contact gives nothing (RFC 6121 4.3.2)."""
        if not self._local(contact) or not self.book.get(contact.local).state(user).from_:
            return
        for resource in self.front.resources(contact):
            if resource.available:
                self._send_presence_of(resource, to)

    def _send_presence_of(self, resource: Session, to: JID) -> None:
        """``resource``'s current presence to ``to`` (a full JID, or every available
        resource of a bare one)."""
        if resource.presence is None:
            return
        presence = etree.fromstring(resource.presence)
        self._deliver(presence, to)

    def _unavailable_to(self, owner: JID, to: JID) -> None:
        """Unavailable presence from each of ``owner``'s available resources to ``to``."""
        for resource in self.front.resources(owner):
            if resource.available:
                self._deliver(_presence("unavailable", resource.jid), to)

    def _deliver(self, presence: etree._Element, to: JID) -> None:
        """Deliver to a local full JID, or to every available resource of a bare one,
        unless either side blocks the other (XEP-0191)."""
        if not self._local(to) or self._blocked(parse_jid(presence.get("from", "")), to):
            return
        presence.set("to", str(to))
        if to.resource:
            target = self.front.sessions.get(to.bare, {}).get(to.resource)
            targets = [target] if target is not None else []
        else:
            targets = [s for s in self.front.resources(to) if s.available]
        if targets:
            data = serialize(presence)
            for target in targets:
                target.send(data)

    def _blocked(self, sender: JID, to: JID) -> bool:
        if sender.bare == to.bare:
            return False
        blocking = self.front.blocking
        return blocking.blocks(sender.bare, to) or blocking.blocks(to.bare, sender)

    # --- directed presence (RFC 6121 4.6) and errors ------------------------------------

    def _directed(self, session: Session, el: etree._Element) -> None:
        to = self._recipient(session, el)
        if to is None or not self._local(to):
            return
        if to.bare != session.bare:  # own resources get the unavailable presence anyway
            if el.get("type") is None:
                session.directed.add(to)
            else:
                session.directed.discard(to)
        self._deliver(el, to)

    def _error(self, session: Session, el: etree._Element) -> None:
        """A presence error goes to the full JID it answers; the sender of the erroring
        presence no longer counts as having directed presence from the user."""
        to = self._recipient(session, el)
        if to is None or not to.resource:
            return
        target = self.front.sessions.get(to.bare, {}).get(to.resource)
        if target is not None:
            target.directed.discard(session.jid)
            target.directed.discard(session.bare)
            target.send(serialize(el))

    # --- subscriptions (RFC 6121 3) ---------------------------------------------------

    def _subscription(self, session: Session, el: etree._Element, kind: Kind) -> None:
        to = self._recipient(session, el)
        if to is None or to.bare == session.bare or not to.local:
            return
        user, contact = session.bare, to.bare
        el.set("from", str(user))  # subscription stanzas travel between bare JIDs (3.1.2)
        el.set("to", str(contact))
        before = self.book.get(user.local).state(contact)
        result = outbound(kind, before)
        if result.state != before:
            self._record(user, contact, result.state)
            session.conn.sync_before_output = True  # the push confirms a stored change
        if not result.route:
            return
        self._inbound(kind, el, user, contact)
        if kind == "subscribed":  # the contact now gets the user's presence (3.1.5)
            for resource in self.front.resources(user):
                if resource.available:
                    self._send_presence_of(resource, contact)
        elif kind == "unsubscribed" and before.from_:  # and no longer (3.2.2)
            self._unavailable_to(user, contact)

    def _inbound(self, kind: Kind, el: etree._Element, sender: JID, user: JID) -> None:
        """``kind`` from ``sender`` arrives for the local ``user`` (RFC 6121 A.3)."""
        if not self._local(user):
            return
        roster = self.book.get(user.local)
        before = roster.state(sender)
        result = inbound(kind, before)
        data = serialize(el)
        self._record(user, sender, result.state, data if kind == "subscribe" else b"")
        if result.deliver:
            for target in self.front.resources(user):
                if target.available and target.roster_requested:
                    target.send(data)
        if result.auto_subscribed:
            self._inbound("subscribed", _presence("subscribed", user, sender), user, sender)
            for resource in self.front.resources(user):
                if resource.available:
                    self._send_presence_of(resource, sender)
        if kind == "unsubscribe" and before.from_:  # the sender no longer gets presence
            self._unavailable_to(user, sender)

    def _record(self, owner: JID, contact: JID, state: State, request: bytes = b"") -> None:
        """Store ``owner``'s new state towards ``contact``; push a changed item."""
        roster = self.book.get(owner.local)
        if roster.state(contact) == state:
            return
        item = roster.set_state(contact, state, request)
        self.book.save(owner.local)
        if item is not None:
            self.roster.push(owner, item)

    def _removed(self, session: Session, contact: JID, state: State) -> None:
        """The user removed ``contact`` from the roster: both subscriptions end and
        pending requests are withdrawn or refused (RFC 6121 2.5.2)."""
        user = session.bare
        if state.to or state.pending_out:
            self._inbound("unsubscribe", _presence("unsubscribe", user, contact), user, contact)
        if state.from_ or state.pending_in:
            refusal = _presence("unsubscribed", user, contact)
            self._inbound("unsubscribed", refusal, user, contact)
            if state.from_:
                self._unavailable_to(user, contact)

    # --- addressing -------------------------------------------------------------------

    def _recipient(self, session: Session, el: etree._Element) -> JID | None:
        """The stanza's 'to'; None when there is none (presence without one is a
        broadcast, not to the sender), or as the front end's ``recipient`` says."""
        if el.get("to") is None:
            return None
        return self.front.recipient(session, el)

    def _local(self, jid: JID) -> bool:
        return self.front.user_exists(jid)


def _presence(kind: str, sender: JID, to: JID | None = None) -> etree._Element:
    presence = element("presence", type=kind, from_=str(sender))
    if to is not None:
        presence.set("to", str(to))
    return presence


def _standalone(el: etree._Element) -> etree._Element:
    """A copy of a stanza apart from the stream it came in on (without the stream
    header's namespace declarations), to keep, re-address and serialize freely."""
    copy = etree.fromstring(etree.tostring(el))
    etree.cleanup_namespaces(copy)
    return copy


def _priority(el: etree._Element) -> int:
    try:
        return max(-128, min(127, int(el.findtext(f"{{{NS_CLIENT}}}priority") or 0)))
    except ValueError:
        return 0
