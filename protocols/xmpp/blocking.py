"""The blocking command (XEP-0191): each account's blocklist, the IQs that read and change
it, and the check the front end makes before routing any stanza between two JIDs.

Blocklists persist in the store's key-value records (``xmpp/blocklist/<user>``, the
blocked JIDs one per line).  Items match as XEP-0191 section 6 (after XEP-0016) says: a
full JID matches itself, a bare JID every resource, a domain every JID at it.
"""

from __future__ import annotations

import secrets
from collections.abc import Container
from functools import partial
from typing import TYPE_CHECKING

from lxml import etree

from protocols.xmpp.account_data import addressed_account
from protocols.xmpp.jid import JID, InvalidJID, parse_jid
from protocols.xmpp.session import Session
from protocols.xmpp.stanza import IQ, PRESENCE, element, error_reply, iq_result
from protocols.xmpp.stream import NS_CLIENT

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd

NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
PREFIX = "xmpp/blocklist/"
#: the session asked for its blocklist, so it gets blocklist pushes (section 3.3)
REQUESTED = "blocklist"
#: JIDs one account may block
MAX_ITEMS = 1000


class Blocking:
    def __init__(self, front: XMPPFrontEnd) -> None:
        self.front = front
        #: account (local part) -> blocked JIDs, in the order they were blocked
        self.lists: dict[str, dict[JID, None]] = {}
        for key, data in front.broker.take_kv(PREFIX).items():
            jids = (parse_jid(line) for line in data.decode().splitlines() if line)
            self.lists[key.removeprefix(PREFIX)] = dict.fromkeys(jids)

    # --- the check before routing ------------------------------------------------------

    def blocks(self, account: JID, jid: JID) -> bool:
        """Whether the local ``account`` blocked ``jid``."""
        blocked = self.lists.get(account.local) if account.domain == self.front.domain else None
        return bool(blocked) and matches(blocked, jid)

    def refuses(self, session: Session, stanza: etree._Element) -> bool:
        """True if ``stanza`` from ``session`` must not be routed because either side
        blocked the other, after answering it as XEP-0191 says: outbound stanzas get
        not-acceptable with <blocked/> (3.4); inbound presence is dropped, messages and
        IQ requests get service-unavailable, as if the user did not exist (3.3)."""
        to_text = stanza.get("to")
        if to_text is None or not self.lists:
            return False  # to the sender's own account, or nobody blocks anyone
        try:
            to = parse_jid(to_text)
        except InvalidJID:
            return False  # routing answers jid-malformed
        if to.bare == session.bare or not to.local and to.domain == self.front.domain:
            return False  # the sender's own account, or the server itself
        kind = stanza.get("type")
        if self.blocks(session.bare, to):
            if kind not in ("error", "result"):
                session.send(_blocked_error(stanza))
            return True
        if to.local and self.blocks(to, session.jid):
            request = kind in ("get", "set") if stanza.tag == IQ else kind != "error"
            if stanza.tag != PRESENCE and request:
                session.send(error_reply(stanza, "service-unavailable"))
            return True
        return False

    # --- changes -----------------------------------------------------------------------

    def block(self, account: JID, jids: list[JID]) -> None:
        blocked = self.lists.setdefault(account.local, {})
        blocked.update(dict.fromkeys(jids))
        self._save(account)
        for jid in jids:
            self._vanish(account, jid)

    def unblock(self, account: JID, jids: list[JID] | None) -> None:
        """Unblock ``jids``, or everyone with None."""
        blocked = self.lists.get(account.local, {})
        for jid in list(blocked) if jids is None else jids:
            blocked.pop(jid, None)
        self._save(account)

    def _save(self, account: JID) -> None:
        blocked = self.lists.get(account.local)
        if not blocked:
            self.lists.pop(account.local, None)
        data = "".join(f"{jid}\n" for jid in blocked).encode() if blocked else None
        self.front.broker.store.put_kv(PREFIX + account.local, data)

    def _vanish(self, account: JID, jid: JID) -> None:
        """The blocked contact's resources here see the account's available resources go
        unavailable (section 3.3)."""
        if jid.domain != self.front.domain or not jid.local:
            return
        contacts = self.front.resources(jid.bare)
        if jid.resource:
            contacts = [s for s in contacts if s.jid == jid]
        for resource in self.front.resources(account):
            if not resource.available:
                continue
            for contact in contacts:
                unavailable = element("presence", type="unavailable")
                unavailable.set("from", str(resource.jid))
                unavailable.set("to", str(contact.jid))
                contact.send(unavailable)


def matches(blocked: Container[JID], jid: JID) -> bool:
    """Whether a blocklist covers ``jid``: its full JID, bare JID, domain/resource or
    domain is on it (XEP-0016 section 2.1's order)."""
    candidates = (jid, jid.bare, JID("", jid.domain, jid.resource), JID("", jid.domain, ""))
    return any(candidate in blocked for candidate in candidates)


def install(front: XMPPFrontEnd) -> Blocking:
    blocking = Blocking(front)
    front.disco_features.add(NS_BLOCKING)
    front.account_iq[("get", f"{{{NS_BLOCKING}}}blocklist")] = partial(_get, blocking)
    front.account_iq[("set", f"{{{NS_BLOCKING}}}block")] = partial(_block, blocking)
    front.account_iq[("set", f"{{{NS_BLOCKING}}}unblock")] = partial(_unblock, blocking)
    return blocking


def _get(blocking: Blocking, session: Session, iq: etree._Element, _: etree._Element) -> None:
    if not _own(session, iq):
        return
    result = etree.Element(f"{{{NS_BLOCKING}}}blocklist", nsmap={None: NS_BLOCKING})
    for jid in blocking.lists.get(session.bare.local, {}):
        etree.SubElement(result, f"{{{NS_BLOCKING}}}item", jid=str(jid))
    session.extensions[REQUESTED] = True
    session.send(iq_result(iq, result))


def _block(blocking: Blocking, session: Session, iq: etree._Element, block: etree._Element) -> None:
    jids = _items(session, iq, block)
    if jids is None:
        return
    if not jids:
        session.send(error_reply(iq, "bad-request", "name the JIDs to block"))
        return
    if len(set(blocking.lists.get(session.bare.local, {})) | set(jids)) > MAX_ITEMS:
        session.send(error_reply(iq, "resource-constraint", "blocklist full"))
        return
    blocking.block(session.bare, jids)
    session.send(iq_result(iq))
    _push(blocking, session.bare, "block", jids)


def _unblock(
    blocking: Blocking, session: Session, iq: etree._Element, unblock: etree._Element
) -> None:
    jids = _items(session, iq, unblock)
    if jids is None:
        return
    blocking.unblock(session.bare, jids or None)
    session.send(iq_result(iq))
    _push(blocking, session.bare, "unblock", jids)


def _own(session: Session, iq: etree._Element) -> bool:
    """The request is about the sender's own account; if not, it is answered forbidden."""
    if addressed_account(session, iq) == session.bare:
        return True
    session.send(error_reply(iq, "forbidden", "only your own blocklist"))
    return False


def _items(session: Session, iq: etree._Element, command: etree._Element) -> list[JID] | None:
    """The JIDs of a block or unblock command; None after answering a bad one."""
    if not _own(session, iq):
        return None
    jids: list[JID] = []
    for item in command.iterchildren(f"{{{NS_BLOCKING}}}item"):
        try:
            jids.append(parse_jid(item.get("jid", "")))
        except InvalidJID:
            session.send(error_reply(iq, "jid-malformed", item.get("jid", "")))
            return None
    return jids


def _push(blocking: Blocking, account: JID, command: str, jids: list[JID]) -> None:
    """Tell the account's resources that asked for the blocklist what changed (3.3, 3.4)."""
    for resource in blocking.front.resources(account):
        if not resource.extensions.get(REQUESTED):
            continue
        push = element("iq", type="set", id=f"push-{secrets.token_hex(4)}", to=str(resource.jid))
        change = etree.SubElement(push, f"{{{NS_BLOCKING}}}{command}", nsmap={None: NS_BLOCKING})
        for jid in jids:
            etree.SubElement(change, f"{{{NS_BLOCKING}}}item", jid=str(jid))
        resource.send(push)


def _blocked_error(stanza: etree._Element) -> etree._Element:
    """not-acceptable with XEP-0191's <blocked/> condition (section 3.4)."""
    reply = error_reply(stanza, "not-acceptable")
    error = reply.find(f"{{{NS_CLIENT}}}error")
    assert error is not None
    etree.SubElement(error, f"{{{NS_BLOCKING_ERRORS}}}blocked", nsmap={None: NS_BLOCKING_ERRORS})
    return reply
