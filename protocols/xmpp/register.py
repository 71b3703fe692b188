"""In-band registration (XEP-0077), off unless ``[xmpp] registration = true``.

Before authentication a stream over TLS (or from loopback) may ask for the form and create
one account in the broker's user database; afterwards an account may change its password
or remove itself.  With registration off nothing is offered and register IQs get
service-unavailable.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING

from lxml import etree

from broker.log import event
from protocols.xmpp.connection import XMPPConnection
from protocols.xmpp.jid import InvalidJID, parse_jid
from protocols.xmpp.session import Session
from protocols.xmpp.stanza import error_reply, iq_result, serialize
from protocols.xmpp.stream import StreamError

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd

log = logging.getLogger("broker.xmpp")

NS_REGISTER = "jabber:iq:register"
NS_FEATURE = "http://jabber.org/features/iq-register"
QUERY = f"{{{NS_REGISTER}}}query"


class Registration:
    def __init__(self, front: XMPPFrontEnd) -> None:
        self.front = front
        self.enabled = front.settings.registration
        #: streams that created an account already: one account per stream
        self._registered: weakref.WeakSet[XMPPConnection] = weakref.WeakSet()

    def allowed(self, conn: XMPPConnection) -> bool:
        return self.enabled and (conn.secure or conn.peer_loopback)

    def features(self, conn: XMPPConnection) -> str:
        """The pre-authentication stream feature, when registration is offered."""
        return f"<register xmlns='{NS_FEATURE}'/>" if self.allowed(conn) else ""

    def pre_auth_iq(self, conn: XMPPConnection, iq: etree._Element) -> None:
        """An IQ before authentication: a registration request, or a stream error."""
        query = iq.find(QUERY)
        if query is None or len(iq) != 1 or iq.get("type") not in ("get", "set"):
            raise StreamError("not-authorized", "authenticate first")
        strip = conn.parser.header_declarations
        if not self.allowed(conn):
            conn.write(serialize(error_reply(iq, "service-unavailable"), strip))
        elif iq.get("type") == "get":
            conn.write(serialize(iq_result(iq, _form()), strip))
        else:
            conn.write(serialize(self._create(conn, iq, query), strip))

    def _create(
        self, conn: XMPPConnection, iq: etree._Element, query: etree._Element
    ) -> etree._Element:
        """The answer to a registration: the account is created, or why not."""
        if conn in self._registered:
            return error_reply(iq, "not-allowed", "one registration per stream")
        username = (query.findtext(f"{{{NS_REGISTER}}}username") or "").strip().lower()
        password = query.findtext(f"{{{NS_REGISTER}}}password") or ""
        if not username or not password:
            return error_reply(iq, "not-acceptable", "username and password required")
        try:
            jid = parse_jid(f"{username}@{self.front.domain}")
        except InvalidJID:
            return error_reply(iq, "jid-malformed", "not a valid user name")
        if jid.local != username:
            return error_reply(iq, "jid-malformed", "not a valid user name")
        users = self.front.broker.users
        if users.get(username) is not None:
            return error_reply(iq, "conflict", "the user name is taken")
        users.add(username, password)
        self._registered.add(conn)
        event(log, logging.INFO, "xmpp account registered", peer=conn.peer, user=username)
        return iq_result(iq)

    # --- after authentication -------------------------------------------------------

    def account_get(self, session: Session, iq: etree._Element, _: etree._Element) -> None:
        form = _form()
        etree.SubElement(form, f"{{{NS_REGISTER}}}registered")
        username = form.find(f"{{{NS_REGISTER}}}username")
        assert username is not None
        username.text = session.bare.local
        session.send(iq_result(iq, form))

    def account_set(self, session: Session, iq: etree._Element, query: etree._Element) -> None:
        """Password change (section 3.3) or account removal (section 3.2)."""
        if not _own(session, iq):
            session.send(error_reply(iq, "forbidden", "only your own account"))
            return
        users = self.front.broker.users
        if query.find(f"{{{NS_REGISTER}}}remove") is not None:
            users.delete(session.username)
            session.send(iq_result(iq))
            event(log, logging.INFO, "xmpp account removed", user=session.username)
            for resource in self.front.resources(session.bare):
                resource.conn.close("not-authorized", "account removed")
            return
        username = (query.findtext(f"{{{NS_REGISTER}}}username") or "").strip().lower()
        password = query.findtext(f"{{{NS_REGISTER}}}password") or ""
        if username != session.bare.local or not password:
            session.send(error_reply(iq, "bad-request", "your user name and a new password"))
            return
        users.set_password(session.username, password)
        session.send(iq_result(iq))


def install(front: XMPPFrontEnd) -> Registration:
    registration = Registration(front)
    if registration.enabled:
        front.disco_features.add(NS_REGISTER)
        for table in (front.server_iq, front.account_iq):
            table[("get", QUERY)] = registration.account_get
            table[("set", QUERY)] = registration.account_set
    return registration


def _form() -> etree._Element:
    query = etree.Element(QUERY, nsmap={None: NS_REGISTER})
    etree.SubElement(
        query, f"{{{NS_REGISTER}}}instructions"
    ).text = "Choose a user name and password."
    etree.SubElement(query, f"{{{NS_REGISTER}}}username")
    etree.SubElement(query, f"{{{NS_REGISTER}}}password")
    return query


def _own(session: Session, iq: etree._Element) -> bool:
    """The request is to the server or to the sender's own account."""
    to = iq.get("to")
    if to is None:
        return True
    try:
        jid = parse_jid(to)
    except InvalidJID:
        return False
    return jid.bare == session.bare or jid == parse_jid(session.jid.domain)
