"""The publish-subscribe service at ``pubsub.<domain>`` (XEP-0060), where every topic is
a node (SPEC "Where protocols meet", item 4).

Nodes need no creation: any valid topic names a node, and any MQTT filter names one to
subscribe to (``sensors/+/temp``); explicit creation gives a node an owner and a stored
configuration (access model, publish model, max_items...).  A node's item is its topic's
retained message: an item publish is a retained publish on the topic (with the item id
as message_id), an MQTT retained publish becomes the node's item, and clearing the
retained value retracts it.  A node configured for more than one item also keeps the
earlier ones in its record.  Ordinary publishes are notifications only.

Notifications come through the core like any subscriber's messages (``bridge.py``);
what this module keeps is the node records (``xmpp/pubsub/<node>``), the checks of
permissions and topic ACLs, and the mirror of retained values.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lxml import etree

from broker import auth
from broker.config import valid_filter
from broker.core import DEFAULT_VHOST
from broker.errors import BrokerError
from broker.log import event
from broker.message import Message, Properties
from broker.topics import TOPIC_EXCHANGE, mqtt_to_key
from protocols.xmpp import forms
from protocols.xmpp.disco import NS_INFO, NS_ITEMS, info
from protocols.xmpp.jid import JID
from protocols.xmpp.pubsub import payload as payloads
from protocols.xmpp.pubsub.bridge import ITEM_ID, NotificationBridge, item_id
from protocols.xmpp.pubsub.errors import Refusal
from protocols.xmpp.pubsub.host import (
    FEATURES,
    NS_PUBSUB,
    OWNER,
    PUBSUB,
    PubsubHost,
)
from protocols.xmpp.pubsub.nodes import META_DATA, PUBLISH_OPTIONS, Config, Item, Node
from protocols.xmpp.roster import Roster
from protocols.xmpp.session import Session
from protocols.xmpp.stanza import IQ, error_reply, iq_result

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd

log = logging.getLogger("broker.xmpp")

PREFIX = "xmpp/pubsub/"
IDENTITY = ("pubsub", "service", "Topics")
#: nodes disco#items lists at most
MAX_LISTED = 500


def message_item(message: Message, domain: str) -> Item:
    """A retained message as the item it is."""
    element = payloads.to_element(message.body, message.properties.content_type)
    publisher = f"{message.publisher}@{domain}" if message.publisher else ""
    return Item(item_id(message), payloads.element_bytes(element), publisher)


def topic_name(name: str) -> bool:
    """A node a publish, an item or a creation can name: a concrete, non-system topic."""
    return valid_filter(name) and "+" not in name and "#" not in name and name[0] != "$"


class TopicService(PubsubHost):
    """The component on ``pubsub.<domain>``."""

    def __init__(self, front: XMPPFrontEnd, create_nodes: bool) -> None:
        super().__init__()
        self.front = front
        self.jid = f"pubsub.{front.domain}"
        self.create_nodes = create_nodes
        self.broker = front.broker
        self.vhost = front.broker.vhost(DEFAULT_VHOST)
        self.records: dict[str, Node] = {
            key.removeprefix(PREFIX): Node.decode(key.removeprefix(PREFIX), data)
            for key, data in front.broker.take_kv(PREFIX).items()
        }
        #: a retained value being cleared by a retraction here (announced here)
        self._retracting = False
        self.bridge: NotificationBridge | None = None
        front.broker.retained.on_change.append(self._retained_changed)

    # --- the component ------------------------------------------------------------------

    def stanza(self, session: Session, el: etree._Element, to: JID) -> None:
        if el.tag != IQ:
            return  # messages and presence to the service mean nothing to it
        kind = el.get("type")
        if kind in ("result", "error"):
            return
        if kind not in ("get", "set") or el.get("id") is None:
            session.send(error_reply(el, "bad-request", "iq needs an id and a type"))
            return
        if to.local or to.resource:
            session.send(error_reply(el, "service-unavailable"))
            return
        payload = el[0] if len(el) == 1 else None
        if payload is None:
            session.send(error_reply(el, "bad-request", "an iq carries one payload"))
        elif payload.tag in (PUBSUB, OWNER):
            self.iq(session, el, payload)
        elif kind == "get" and payload.tag == f"{{{NS_INFO}}}query":
            self._disco_info(session, el, payload)
        elif kind == "get" and payload.tag == f"{{{NS_ITEMS}}}query":
            self._disco_items(session, el, payload)
        else:
            session.send(error_reply(el, "service-unavailable"))

    def unavailable(self, session: Session) -> None:
        """Subscriptions outlast sessions: nothing to leave."""

    # --- permissions --------------------------------------------------------------------

    def _allowed(self, session: Session, kind: str) -> bool:
        user = self.broker.users.get(session.username)
        return user is not None and auth.can(user, self.vhost.name, kind, TOPIC_EXCHANGE)

    def check_read(self, session: Session, name: str) -> None:
        acl = self.broker.acl
        if not self._allowed(session, "read") or (
            acl and acl.subscription(session.username, "", name) == "deny"
        ):
            raise Refusal("forbidden", text=f"reading {name!r} is not permitted")

    def check_write(self, session: Session, name: str) -> None:
        acl = self.broker.acl
        if not self._allowed(session, "write") or (
            acl and not acl.check(session.username, "", name, "publish")
        ):
            raise Refusal("forbidden", text=f"publishing to {name!r} is not permitted")

    # --- the nodes ----------------------------------------------------------------------

    def node(self, name: str) -> Node | None:
        node = self.records.get(name)
        if node is None and valid_filter(name):
            node = Node(name)
        return node

    def nodes(self) -> Iterable[Node]:
        return list(self.records.values())

    def may_create(self, session: Session, name: str) -> bool:
        return self.create_nodes

    def exists(self, name: str) -> bool:
        node = self.records.get(name)
        return node is not None and bool(node.owners())

    def valid_name(self, name: str) -> bool:
        return topic_name(name)

    def save(self, node: Node) -> None:
        if self.bridge is not None:
            self.bridge.changed()
        if not (node.affiliations or node.subscriptions or node.items) and node.config == Config():
            if self.records.pop(node.name, None) is not None:
                self.broker.store.put_kv(PREFIX + node.name, None)
            return
        self.records[node.name] = node
        self.broker.store.put_kv(PREFIX + node.name, node.encode())

    def remove(self, node: Node) -> None:
        if self.bridge is not None:
            self.bridge.changed()
        self.records.pop(node.name, None)
        self.broker.store.put_kv(PREFIX + node.name, None)
        if topic_name(node.name):
            self._clear(node.name)

    def roster(self, node: Node) -> Roster | None:
        owners = node.owners()
        return self.front.presence.book.get(owners[0].local) if owners else None

    # --- publish, items, retract --------------------------------------------------------

    def publish_target(
        self, session: Session, name: str, options: dict[str, list[str]] | None
    ) -> Node:
        if not topic_name(name):
            raise Refusal("item-not-found", text=f"{name!r} is not a topic to publish to")
        node = self.records.get(name)
        if node is not None:
            return node
        if options is None:
            return Node(name)
        if not self.may_create(session, name):
            raise Refusal("forbidden", text="you may not create nodes here")
        node = Node(name, Config().updated(options, PUBLISH_OPTIONS))
        node.affiliations[session.bare] = "owner"
        self.save(node)
        return node

    def publish(self, session: Session, node: Node, item: Item, payload: etree._Element) -> None:
        self.check_write(session, node.name)
        body, content_type = payloads.to_body(payload)
        retain = node.config.persist_items
        message = Message(
            TOPIC_EXCHANGE,
            mqtt_to_key(node.name),
            body,
            Properties(content_type=content_type, message_id=item.id, delivery_mode=2),
            None,
            self,
            session.username,
            {"retain": True} if retain else None,
            node.name,
        )
        message.cache = {ITEM_ID: item.id}
        if retain:
            self.broker.retained.set(node.name, message)
        self._route(message)

    def _route(self, message: Message) -> None:
        try:
            self.vhost.publish(message)
        except BrokerError as exc:
            event(
                log, logging.WARNING, "pubsub publish failed", node=message.topic, error=exc.message
            )
            raise Refusal("internal-server-error", text=exc.message) from None

    def items(self, session: Session, node: Node) -> list[Item]:
        self.check_read(session, node.name)
        if node.config.max_items > 1 and node.items:
            return node.newest()
        message = self.broker.retained.get(node.name) if topic_name(node.name) else None
        if message is None or message.expired():
            return []
        return [message_item(message, self.front.domain)]

    def retract(self, session: Session, node: Node, ids: list[str], notify: bool) -> None:
        self.check_write(session, node.name)
        current = self.broker.retained.get(node.name) if topic_name(node.name) else None
        current_id = item_id(current) if current is not None else None
        if any(i not in node.items and i != current_id for i in ids):
            raise Refusal("item-not-found", text="no such item")
        for retracted in ids:
            node.items.pop(retracted, None)
        if node.name in self.records:
            self.save(node)
        if current_id in ids:
            self._retracting = True
            try:
                self._clear(node.name)
            finally:
                self._retracting = False
        if notify:
            self.announce_retract(node.name, ids)

    def purge(self, node: Node) -> None:
        node.items.clear()
        self.save(node)
        if topic_name(node.name):
            self._retracting = True
            try:
                self._clear(node.name)
            finally:
                self._retracting = False

    def _clear(self, topic: str) -> None:
        """Clear the topic's retained value, and tell every protocol (an empty retained
        publish, as MQTT clears one)."""
        if self.broker.retained.get(topic) is None:
            return
        self.broker.retained.set(topic, None)
        self._route(
            Message(
                TOPIC_EXCHANGE,
                mqtt_to_key(topic),
                b"",
                Properties(),
                None,
                self,
                None,
                {"retain": True},
                topic,
            )
        )

    def _retained_changed(
        self, topic: str, message: Message | None, previous: Message | None
    ) -> None:
        """Mirror a retained value: an item for nodes keeping several, a retraction when
        it is cleared (by any protocol)."""
        if self._retracting:
            return
        node = self.records.get(topic)
        if message is not None:
            if node is not None and node.config.max_items > 1:
                node.add_item(message_item(message, self.front.domain))
                self.save(node)
            return
        if node is not None and node.items:
            ids = list(node.items)
            node.items.clear()
            self.save(node)
        elif previous is not None:
            ids = [item_id(previous)]
        else:
            return
        self.announce_retract(topic, ids)

    def announce_retract(self, topic: str, ids: list[str]) -> None:
        if self.bridge is not None:
            self.bridge.retracted(topic, ids)

    # --- subscriptions ------------------------------------------------------------------

    def subscribable(self, session: Session, name: str) -> Node:
        if not valid_filter(name) or name[0] == "$":
            raise Refusal("item-not-found", text=f"{name!r} is neither a topic nor a filter")
        self.check_read(session, name)
        return self.records.get(name) or Node(name)

    def subscribed(self, node: Node, subscription) -> None:
        if self.bridge is not None:
            self.bridge.watch(node.name)
            if node.config.send_last_published_item != "never":
                self.after.append(lambda: self.bridge.send_retained(node, subscription))

    def unsubscribed(self, node: Node, subscription) -> None:
        if self.bridge is not None and not node.subscriptions:
            self.bridge.unwatch(node.name)

    def notify(self, node: Node, event: etree._Element, only: JID | None = None) -> None:
        if self.bridge is not None:
            self.bridge.send_event(node, event)

    # --- disco ----------------------------------------------------------------------------

    def _disco_info(self, session: Session, iq: etree._Element, query: etree._Element) -> None:
        name = query.get("node")
        if name is None:
            session.send(iq_result(iq, info(IDENTITY, set(FEATURES), None)))
            return
        node = self.node(name)
        if node is None:
            session.send(error_reply(iq, "item-not-found"))
            return
        kind = "leaf" if topic_name(name) else "collection"
        result = info(("pubsub", kind, ""), {NS_PUBSUB}, name)
        fields = [f for f in node.config.fields() if f.var != "pubsub#roster_groups_allowed"]
        owners = [str(jid) for jid in node.owners()]
        fields.append(forms.Field("pubsub#owner", "jid-multi", values=owners))
        result.append(forms.build("result", fields, META_DATA))
        session.send(iq_result(iq, result))

    def _disco_items(self, session: Session, iq: etree._Element, query: etree._Element) -> None:
        name = query.get("node")
        result = etree.Element(f"{{{NS_ITEMS}}}query", nsmap={None: NS_ITEMS})
        if name is None:
            listed = {n for n, node in self.records.items() if node.owners()}
            for topic, _ in self.broker.retained.match("#"):
                if len(listed) >= MAX_LISTED:
                    break
                listed.add(topic)
            for topic in sorted(listed)[:MAX_LISTED]:
                etree.SubElement(result, f"{{{NS_ITEMS}}}item", jid=self.jid, node=topic)
        else:
            result.set("node", name)
            node = self.node(name)
            if node is None:
                session.send(error_reply(iq, "item-not-found"))
                return
            try:
                found = self.items(session, node)
            except Refusal as refusal:
                session.send(refusal.reply(iq))
                return
            for item in found:
                etree.SubElement(result, f"{{{NS_ITEMS}}}item", jid=self.jid, name=item.id)
        session.send(iq_result(iq, result))
