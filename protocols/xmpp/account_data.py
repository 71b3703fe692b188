"""Per-account XML the server keeps for its users: vCards (vcard-temp, XEP-0054) and
private XML storage (XEP-0049), both persisted as serialized XML in the store's
key-value records (``xmpp/vcard/<user>``, ``xmpp/private/<user>/{namespace}name``).
"""

from __future__ import annotations

import copy
from functools import partial
from typing import TYPE_CHECKING

from lxml import etree

from protocols.xmpp.jid import JID, parse_jid
from protocols.xmpp.session import Session
from protocols.xmpp.stanza import error_reply, iq_result

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd

NS_VCARD = "vcard-temp"
NS_PRIVATE = "jabber:iq:private"
VCARD_PREFIX = "xmpp/vcard/"
PRIVATE_PREFIX = "xmpp/private/"
#: private storage elements one account may keep
MAX_PRIVATE_ITEMS = 100
#: stored XML is our own serialization, but it is parsed as carefully as a client's
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


class AccountData:
    """vCards by account and private XML by account and element, kept in memory and
    written through to the store."""

    def __init__(self, front: XMPPFrontEnd) -> None:
        self.store = front.broker.store
        self.vcards = {
            key.removeprefix(VCARD_PREFIX): data
            for key, data in front.broker.take_kv(VCARD_PREFIX).items()
        }
        self.private: dict[str, dict[str, bytes]] = {}
        for key, data in front.broker.take_kv(PRIVATE_PREFIX).items():
            user, _, clark = key.removeprefix(PRIVATE_PREFIX).partition("/")
            self.private.setdefault(user, {})[clark] = data

    def set_vcard(self, user: str, vcard: etree._Element) -> None:
        data = _bytes(vcard) if len(vcard) else None
        if data is None:
            self.vcards.pop(user, None)
        else:
            self.vcards[user] = data
        self.store.put_kv(VCARD_PREFIX + user, data)

    def vcard(self, user: str) -> etree._Element:
        data = self.vcards.get(user)
        if data is None:
            return etree.Element(f"{{{NS_VCARD}}}vCard", nsmap={None: NS_VCARD})
        return etree.fromstring(data, _PARSER)

    def set_private(self, user: str, el: etree._Element) -> None:
        self.private.setdefault(user, {})[el.tag] = data = _bytes(el)
        self.store.put_kv(f"{PRIVATE_PREFIX}{user}/{el.tag}", data)

    def private_item(self, user: str, tag: str) -> etree._Element | None:
        data = self.private.get(user, {}).get(tag)
        return None if data is None else etree.fromstring(data, _PARSER)

    def private_count(self, user: str) -> int:
        return len(self.private.get(user, {}))


def install(front: XMPPFrontEnd) -> AccountData:
    data = AccountData(front)
    front.disco_features.update((NS_VCARD, NS_PRIVATE))
    front.account_iq[("get", f"{{{NS_VCARD}}}vCard")] = partial(_get_vcard, data)
    front.account_iq[("set", f"{{{NS_VCARD}}}vCard")] = partial(_set_vcard, data)
    front.account_iq[("get", f"{{{NS_PRIVATE}}}query")] = partial(_get_private, data)
    front.account_iq[("set", f"{{{NS_PRIVATE}}}query")] = partial(_set_private, data)
    return data


def addressed_account(session: Session, iq: etree._Element) -> JID:
    """The bare JID an IQ the server answers for an account is about: its 'to', or the
    sender's own account when there is none (the front end checked the address)."""
    to = iq.get("to")
    return session.bare if to is None else parse_jid(to).bare


def _get_vcard(data: AccountData, session: Session, iq: etree._Element, _: etree._Element) -> None:
    session.send(iq_result(iq, data.vcard(addressed_account(session, iq).local)))


def _set_vcard(
    data: AccountData, session: Session, iq: etree._Element, vcard: etree._Element
) -> None:
    if addressed_account(session, iq) != session.bare:
        session.send(error_reply(iq, "forbidden", "only your own vCard"))
        return
    data.set_vcard(session.bare.local, vcard)
    session.send(iq_result(iq))


def _get_private(
    data: AccountData, session: Session, iq: etree._Element, query: etree._Element
) -> None:
    if (refused := _refusal(session, iq, query)) is not None:
        session.send(refused)
        return
    result = etree.Element(f"{{{NS_PRIVATE}}}query", nsmap={None: NS_PRIVATE})
    for wanted in query:
        stored = data.private_item(session.bare.local, wanted.tag)
        result.append(stored if stored is not None else _empty(wanted))
    session.send(iq_result(iq, result))


def _set_private(
    data: AccountData, session: Session, iq: etree._Element, query: etree._Element
) -> None:
    if (refused := _refusal(session, iq, query)) is not None:
        session.send(refused)
        return
    user = session.bare.local
    new = {el.tag for el in query} - set(data.private.get(user, {}))
    if data.private_count(user) + len(new) > MAX_PRIVATE_ITEMS:
        session.send(error_reply(iq, "resource-constraint", "too many stored elements"))
        return
    for el in query:
        data.set_private(user, el)
    session.send(iq_result(iq))


def _refusal(session: Session, iq: etree._Element, query: etree._Element) -> etree._Element | None:
    """The error for a private storage request XEP-0049 refuses, if it is one: another
    account's data, no element named, or a jabber:* namespace (section 3)."""
    if addressed_account(session, iq) != session.bare:
        return error_reply(iq, "forbidden", "only your own private storage")
    if not len(query) or any(not isinstance(el.tag, str) for el in query):
        return error_reply(iq, "bad-request", "name one element")
    for el in query:
        namespace = etree.QName(el).namespace or ""
        if not namespace or namespace.startswith("jabber:"):
            return error_reply(iq, "not-acceptable", "namespace reserved")
    return None


def _empty(el: etree._Element) -> etree._Element:
    return etree.Element(el.tag, nsmap={None: etree.QName(el).namespace})


def _bytes(el: etree._Element) -> bytes:
    """The element alone, without the stream's namespace declarations lxml would repeat."""
    return etree.tostring(copy.deepcopy(el))
