"""Personal eventing (XEP-0163): a pubsub service on every account, addressed to the
account's bare JID, for OMEMO device lists and bundles, avatars (XEP-0084), nicknames
(XEP-0172) and the like.

Only the account publishes to its nodes, which it creates by publishing (configured by
publish-options, XEP-0060 7.1.5); access is by presence subscription unless configured
otherwise.  Notifications go to the owner's resources and to contacts with a presence
subscription whose entity capabilities (XEP-0115) include ``<node>+notify``: a client's
caps are asked for once per ``ver`` (disco#info) and kept by ``ver`` when they hash to it
(``caps.py``), else for that resource alone.  A resource that comes online gets the last
item of every node it is interested in, of its own account and of the contacts it is
subscribed to.  Nodes are kept under ``xmpp/pep/<user>/<node>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING

from lxml import etree

from protocols.xmpp.account_data import addressed_account
from protocols.xmpp.disco import NS_CAPS, NS_INFO
from protocols.xmpp.jid import JID
from protocols.xmpp.pubsub.caps import verification
from protocols.xmpp.pubsub.errors import Refusal
from protocols.xmpp.pubsub.host import (
    NS_EVENT,
    PubsubHost,
    event_element,
    item_element,
    notification,
)
from protocols.xmpp.pubsub.nodes import PUBLISH_OPTIONS, Config, Item, Node, Subscription
from protocols.xmpp.roster import Roster
from protocols.xmpp.session import Session
from protocols.xmpp.stanza import element, serialize

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd

PREFIX = "xmpp/pep/"
DEFAULT = Config(
    access_model="presence",
    publish_model="publishers",
    send_last_published_item="on_sub_and_presence",
)
#: nodes one account may keep, and the longest node name
MAX_NODES = 200
MAX_NAME = 1024
#: caps versions whose features are remembered at most
MAX_CAPS = 10_000
CAPS = f"{{{NS_CAPS}}}c"


class PepService:
    """Every account's nodes, the caps of online resources, and the presence hook."""

    def __init__(self, front: XMPPFrontEnd) -> None:
        self.front = front
        self.store = front.broker.store
        #: user -> node name -> node
        self.accounts: dict[str, dict[str, Node]] = {}
        for key, data in front.broker.take_kv(PREFIX).items():
            user, _, name = key.removeprefix(PREFIX).partition("/")
            self.accounts.setdefault(user, {})[name] = Node.decode(name, data)
        #: caps ver -> the features a client with it announced (verified against the
        #: ver), or a session's own features under ``<full JID>#<ver>`` (unverifiable)
        self.caps: dict[str, frozenset[str]] = {}
        #: caps ver being asked for -> the sessions waiting for the answer
        self._asking: dict[str, list[Session]] = {}

    def host(self, owner: JID) -> AccountPep:
        return AccountPep(self, owner.bare)

    def iq(self, session: Session, iq: etree._Element, payload: etree._Element) -> None:
        self.host(addressed_account(session, iq)).iq(session, iq, payload)

    # --- caps and interest ----------------------------------------------------------------

    def interested(self, session: Session, node: str) -> bool:
        ver = session.extensions.get("caps")
        features = self.caps.get(ver) if isinstance(ver, str) else None
        return features is not None and f"{node}+notify" in features

    def presence(self, session: Session, el: etree._Element) -> None:
        """Broadcast available presence: learn the resource's caps, then send it the last
        items it wants (once per caps version)."""
        if el.get("type") is not None or el.get("to") is not None or not session.available:
            return
        caps = el.find(CAPS)
        if caps is None:
            return
        ver, node, hash_name = caps.get("ver"), caps.get("node"), caps.get("hash", "")
        if not ver or session.extensions.get("caps-ver") == ver:
            return
        session.extensions["caps-ver"] = ver
        session.extensions["caps"] = ver
        if ver in self.caps:
            self.arrived(session)
            return
        waiting = self._asking.get(ver)
        if waiting is not None:
            waiting.append(session)
            return
        self._asking[ver] = [session]
        iq = element("iq", type="get", to=session.jid_text)
        iq.set("from", str(session.bare))
        query = etree.SubElement(iq, f"{{{NS_INFO}}}query", nsmap={None: NS_INFO})
        query.set("node", f"{node}#{ver}")
        self.front.request(session, iq, partial(self._caps_answer, ver, hash_name))

    def _caps_answer(
        self, ver: str, hash_name: str, session: Session, answer: etree._Element
    ) -> None:
        """Keep the features by ``ver`` if they hash to it; else for the answering
        session alone (those waiting for the same ver ask again when they next send
        presence with caps)."""
        waiting = self._asking.pop(ver, [])
        query = answer.find(f"{{{NS_INFO}}}query")
        if answer.get("type") != "result" or query is None:
            return
        features = frozenset(el.get("var", "") for el in query.iter(f"{{{NS_INFO}}}feature"))
        if len(self.caps) >= MAX_CAPS:
            del self.caps[next(iter(self.caps))]
        if verification(query, hash_name) == ver:
            self.caps[ver] = features
            ready = [s for s in waiting if s.extensions.get("caps") == ver]
        else:
            key = session.extensions["caps"] = f"{session.jid_text}#{ver}"
            self.caps[key] = features
            for other in waiting:
                if other is not session:
                    other.extensions.pop("caps-ver", None)  # it asks at its next presence
            ready = [session]
        for resource in ready:
            if resource.available:
                self.arrived(resource)

    def arrived(self, session: Session) -> None:
        """The last item of every interesting node of the account and its contacts."""
        owners = [session.bare]
        roster = self.front.presence.book.get(session.bare.local)
        owners += [jid for jid in roster.subscriptions() if self.front.user_exists(jid)]
        for owner in owners:
            host = self.host(owner)
            for node in host.nodes():
                if not self.interested(session, node.name) or not node.items:
                    continue
                if node.config.send_last_published_item != "on_sub_and_presence":
                    continue
                if owner != session.bare and node.refusal(session.bare, host.roster(node)):
                    continue
                last = node.newest(1)[0]
                host.send_items(node, [item_element(NS_EVENT, last, True)], [session.jid])


class AccountPep(PubsubHost):
    """One account's PEP service, for one request."""

    def __init__(self, pep: PepService, owner: JID) -> None:
        super().__init__()
        self.pep = pep
        self.owner = owner
        self.key = owner.local

    def _nodes(self) -> dict[str, Node]:
        return self.pep.accounts.get(self.key, {})

    def node(self, name: str) -> Node | None:
        return self._nodes().get(name)

    def nodes(self) -> Iterable[Node]:
        return list(self._nodes().values())

    def may_create(self, session: Session, name: str) -> bool:
        return session.bare == self.owner

    def exists(self, name: str) -> bool:
        return name in self._nodes()

    def valid_name(self, name: str) -> bool:
        return 0 < len(name) <= MAX_NAME

    def save(self, node: Node) -> None:
        nodes = self.pep.accounts.setdefault(self.key, {})
        if node.name not in nodes and len(nodes) >= MAX_NODES:
            raise Refusal("resource-constraint", text="too many nodes")
        nodes[node.name] = node
        self.pep.store.put_kv(f"{PREFIX}{self.key}/{node.name}", node.encode())

    def remove(self, node: Node) -> None:
        self._nodes().pop(node.name, None)
        self.pep.store.put_kv(f"{PREFIX}{self.key}/{node.name}", None)

    def roster(self, node: Node) -> Roster | None:
        return self.pep.front.presence.book.get(self.key)

    # --- publish, items, retract ----------------------------------------------------------

    def publish_target(
        self, session: Session, name: str, options: dict[str, list[str]] | None
    ) -> Node:
        node = self.node(name)
        if session.bare != self.owner:
            if node is None:
                raise Refusal("item-not-found", text="no such node")
            raise Refusal("forbidden", text="only the account publishes to its nodes")
        if node is not None:
            return node
        if not self.valid_name(name):
            raise Refusal("not-acceptable", text="not a node name")
        config = DEFAULT.updated(options, PUBLISH_OPTIONS) if options else DEFAULT
        node = Node(name, config)
        node.affiliations[self.owner] = "owner"
        return node

    def publish(self, session: Session, node: Node, item: Item, payload: etree._Element) -> None:
        if node.config.persist_items:
            node.add_item(item)
        self.save(node)
        if node.config.deliver_notifications:
            el = item_element(NS_EVENT, item, node.config.deliver_payloads)
            self.send_items(node, [el], self.recipients(node))

    def items(self, session: Session, node: Node) -> list[Item]:
        return node.newest()

    def retract(self, session: Session, node: Node, ids: list[str], notify: bool) -> None:
        if any(i not in node.items for i in ids):
            raise Refusal("item-not-found", text="no such item")
        for retracted in ids:
            del node.items[retracted]
        self.save(node)
        if notify:
            retractions = [etree.Element(f"{{{NS_EVENT}}}retract", id=i) for i in ids]
            self.send_items(node, retractions, self.recipients(node))

    def purge(self, node: Node) -> None:
        node.items.clear()
        self.save(node)

    # --- subscriptions and notifications --------------------------------------------------

    def subscribable(self, session: Session, name: str) -> Node:
        node = self.node(name)
        if node is None:
            raise Refusal("item-not-found", text="no such node")
        return node

    def subscribed(self, node: Node, subscription: Subscription) -> None:
        if node.items and node.config.send_last_published_item != "never":
            last = item_element(NS_EVENT, node.newest(1)[0], node.config.deliver_payloads)
            self.after.append(lambda: self.send_items(node, [last], [subscription.jid]))

    def unsubscribed(self, node: Node, subscription: Subscription) -> None:
        """Nothing is bound to a PEP subscription."""

    def notify(self, node: Node, event: etree._Element, only: JID | None = None) -> None:
        for jid in self.recipients(node):
            self._send(jid, event, node)

    def recipients(self, node: Node) -> list[JID]:
        """The owner's interested resources, interested resources of contacts the
        access model admits, and explicit subscribers."""
        front = self.pep.front
        roster = self.roster(node)
        found: dict[JID, None] = {}
        candidates = [self.owner]
        if roster is not None:
            candidates += [jid for jid in roster.subscribers() if front.user_exists(jid)]
        for contact in candidates:
            if contact != self.owner and node.refusal(contact, roster) is not None:
                continue
            for session in front.resources(contact):
                if session.available and self.pep.interested(session, node.name):
                    found[session.jid] = None
        for subscription in node.subscriptions:
            if subscription.deliver:
                found[subscription.jid] = None
        return list(found)

    def send_items(self, node: Node, children: list[etree._Element], to: Iterable[JID]) -> None:
        event = event_element()
        items = etree.SubElement(event, f"{{{NS_EVENT}}}items", node=node.name)
        for child in children:
            items.append(child)
        for jid in to:
            self._send(jid, event, node)

    def _send(self, jid: JID, event: etree._Element, node: Node) -> None:
        message = notification(str(self.owner), jid, event, node.config.notification_type)
        self.pep.front.send_to(jid, serialize(message))
        message.remove(event)  # the event goes on to the next recipient
