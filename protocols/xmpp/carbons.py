"""Message carbons (XEP-0280, urn:xmpp:carbons:2): every resource that enabled carbons
sees the user's one-to-one chats that other resources sent or received.

A resource enables or disables carbons with an IQ set of ``<enable/>`` or ``<disable/>``.
Eligible messages (type chat, or normal with a body; without ``<private/>`` or the
XEP-0334 ``<no-copy/>`` hint) are copied wrapped in ``<sent>`` or ``<received>`` and
``<forwarded>``, from the user's bare JID, to each enabled resource that neither sent nor
received the original.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING
from xml.sax.saxutils import quoteattr

from lxml import etree

from protocols.xmpp.jid import JID, InvalidJID, parse_jid
from protocols.xmpp.offline import NS_HINTS
from protocols.xmpp.session import Session
from protocols.xmpp.stanza import error_reply, iq_result
from protocols.xmpp.stream import NS_CLIENT

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd

NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
#: disco features, listed for the server and for accounts
FEATURES = (NS_CARBONS,)
#: the key of the enabled flag in Session.extensions
EXTENSION = "carbons"
_NOT_COPIED = (f"{{{NS_CARBONS}}}private", f"{{{NS_HINTS}}}no-copy")


def install(front: XMPPFrontEnd) -> None:
    front.disco_features.update(FEATURES)
    front.account_features.update(FEATURES)
    front.account_iq[("set", f"{{{NS_CARBONS}}}enable")] = _enable
    front.account_iq[("set", f"{{{NS_CARBONS}}}disable")] = _disable


def _enable(session: Session, iq: etree._Element, payload: etree._Element) -> None:
    _switch(session, iq, True)


def _disable(session: Session, iq: etree._Element, payload: etree._Element) -> None:
    _switch(session, iq, False)


def _switch(session: Session, iq: etree._Element, enabled: bool) -> None:
    to = iq.get("to")
    try:
        own = to is None or parse_jid(to) == session.bare
    except InvalidJID:
        own = False
    if not own:
        session.send(error_reply(iq, "forbidden", "carbons are your own account's"))
        return
    session.extensions[EXTENSION] = enabled
    session.send(iq_result(iq))


def eligible(el: etree._Element) -> bool:
    kind = el.get("type", "normal")
    if kind != "chat" and not (kind == "normal" and el.find(f"{{{NS_CLIENT}}}body") is not None):
        return False
    return not any(el.find(hint) is not None for hint in _NOT_COPIED)


def copy_sent(front: XMPPFrontEnd, sender: Session, el: etree._Element, data: bytes) -> None:
    """Copies of a message ``sender`` sent, to its user's other enabled resources."""
    _copy(front, sender.bare, "sent", el, data, (sender,))


def copy_received(
    front: XMPPFrontEnd,
    to: JID,
    el: etree._Element,
    data: bytes,
    delivered: Collection[Session],
) -> None:
    """Copies of a message delivered to ``delivered``, to the recipient's other enabled
    resources."""
    _copy(front, to.bare, "received", el, data, delivered)


def _copy(
    front: XMPPFrontEnd,
    user: JID,
    direction: str,
    el: etree._Element,
    data: bytes,
    skip: Collection[Session],
) -> None:
    resources = front.sessions.get(user)
    if not resources or len(resources) <= len(skip):
        return  # the common case: no other resource to copy to
    targets = [s for s in resources.values() if s.extensions.get(EXTENSION) and s not in skip]
    if not targets or not eligible(el):
        return
    bare = quoteattr(str(user))
    tail = (
        f"<{direction} xmlns='{NS_CARBONS}'><forwarded xmlns='{NS_FORWARD}'>".encode()
        + data
        + f"</forwarded></{direction}></message>".encode()
    )
    for target in targets:
        to = quoteattr(str(target.jid))
        target.send(
            f"<message xmlns='jabber:client' from={bare} to={to} type='chat'>".encode() + tail
        )
