"""Service discovery (XEP-0030) and the server's entity capabilities (XEP-0115).

The server's features and items are registries on the front end (``disco_features``,
``disco_items``, ``account_features``) that every module fills at install, so what disco
lists is what the server really does.  The caps ``ver`` is computed from them when the
stream features are written, and a disco#info query to ``node#ver`` answers the same.
"""

from __future__ import annotations

import base64
import hashlib
from functools import partial
from typing import TYPE_CHECKING

from lxml import etree

from protocols.xmpp.connection import XMPPConnection
from protocols.xmpp.session import Session
from protocols.xmpp.stanza import error_reply, iq_result

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd

NS_INFO = "http://jabber.org/protocol/disco#info"
NS_ITEMS = "http://jabber.org/protocol/disco#items"
NS_CAPS = "http://jabber.org/protocol/caps"
#: the URI naming this server software in its caps (XEP-0115 section 4)
CAPS_NODE = "urn:broker:caps"
SERVER_IDENTITY = ("server", "im", "broker")
ACCOUNT_IDENTITY = ("account", "registered", "")


def install(front: XMPPFrontEnd) -> None:
    front.disco_features.update((NS_INFO, NS_ITEMS))
    front.account_features.update((NS_INFO, NS_ITEMS))
    front.server_iq[("get", f"{{{NS_INFO}}}query")] = partial(_server_info, front)
    front.server_iq[("get", f"{{{NS_ITEMS}}}query")] = partial(_server_items, front)
    front.account_iq[("get", f"{{{NS_INFO}}}query")] = partial(_account_info, front)
    front.account_iq[("get", f"{{{NS_ITEMS}}}query")] = _account_items
    front.feature_hooks.append(partial(caps_feature, front))


def caps_ver(identity: tuple[str, str, str], features: set[str]) -> str:
    """The verification string of XEP-0115 section 5.1 (one identity, no lang, no forms)."""
    category, kind, name = identity
    text = f"{category}/{kind}//{name}<" + "".join(f"{f}<" for f in sorted(features))
    return base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()


def caps_feature(front: XMPPFrontEnd, conn: XMPPConnection) -> str:
    ver = caps_ver(SERVER_IDENTITY, front.disco_features)
    return f"<c xmlns='{NS_CAPS}' hash='sha-1' node='{CAPS_NODE}' ver='{ver}'/>"


def info(identity: tuple[str, str, str], features: set[str], node: str | None) -> etree._Element:
    query = etree.Element(f"{{{NS_INFO}}}query", nsmap={None: NS_INFO})
    if node is not None:
        query.set("node", node)
    category, kind, name = identity
    ident = etree.SubElement(query, f"{{{NS_INFO}}}identity", category=category, type=kind)
    if name:
        ident.set("name", name)
    for feature in sorted(features):
        etree.SubElement(query, f"{{{NS_INFO}}}feature", var=feature)
    return query


def _server_info(
    front: XMPPFrontEnd, session: Session, iq: etree._Element, query: etree._Element
) -> None:
    node = query.get("node")
    ver = caps_ver(SERVER_IDENTITY, front.disco_features)
    if node is not None and node != f"{CAPS_NODE}#{ver}":
        session.send(error_reply(iq, "item-not-found"))
        return
    session.send(iq_result(iq, info(SERVER_IDENTITY, front.disco_features, node)))


def _server_items(
    front: XMPPFrontEnd, session: Session, iq: etree._Element, query: etree._Element
) -> None:
    if query.get("node") is not None:
        session.send(error_reply(iq, "item-not-found"))
        return
    result = etree.Element(f"{{{NS_ITEMS}}}query", nsmap={None: NS_ITEMS})
    for jid, name in sorted(front.disco_items.items()):
        item = etree.SubElement(result, f"{{{NS_ITEMS}}}item", jid=jid)
        if name:
            item.set("name", name)
    session.send(iq_result(iq, result))


def _account_info(
    front: XMPPFrontEnd, session: Session, iq: etree._Element, query: etree._Element
) -> None:
    if query.get("node") is not None:
        session.send(error_reply(iq, "item-not-found"))
        return
    result = info(ACCOUNT_IDENTITY, front.account_features, None)
    for position, (category, kind, name) in enumerate(front.account_identities, 1):
        ident = result.makeelement(f"{{{NS_INFO}}}identity", category=category, type=kind)
        if name:
            ident.set("name", name)
        result.insert(position, ident)
    session.send(iq_result(iq, result))


def _account_items(session: Session, iq: etree._Element, query: etree._Element) -> None:
    if query.get("node") is not None:
        session.send(error_reply(iq, "item-not-found"))
        return
    session.send(iq_result(iq, etree.Element(f"{{{NS_ITEMS}}}query", nsmap={None: NS_ITEMS})))
