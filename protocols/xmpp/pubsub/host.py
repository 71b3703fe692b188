"""The requests of XEP-0060 in the ``pubsub`` and ``pubsub#owner`` namespaces, answered
for one pubsub host: the topic service at ``pubsub.<domain>`` or an account's PEP service.

``PubsubHost`` parses and checks each request (node id, JIDs, forms, affiliations, the
access and publish models) and leaves what differs between hosts to subclasses: where
nodes live and which names are valid, what a publish does, where items come from, and
how notifications reach subscribers.
"""

from __future__ import annotations

import logging
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

from lxml import etree

from protocols.xmpp import forms
from protocols.xmpp.forms import FormError
from protocols.xmpp.jid import JID, InvalidJID, parse_jid
from protocols.xmpp.pubsub.errors import Refusal, unsupported
from protocols.xmpp.pubsub.nodes import (
    AFFILIATIONS,
    PUBLISH_OPTIONS,
    Config,
    Item,
    Node,
    NotAcceptable,
    Subscription,
)
from protocols.xmpp.pubsub.payload import PayloadError, element_bytes, parse_element
from protocols.xmpp.roster import Roster
from protocols.xmpp.session import Session
from protocols.xmpp.stanza import element, error_reply, iq_result

log = logging.getLogger("broker.xmpp")
Element = etree._Element
#: a request's handler: (session, iq, its payload, the request in it) -> the result's child
Op = Callable[[Session, Element, Element, Element], Element | None]

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_OWNER = f"{NS_PUBSUB}#owner"
NS_EVENT = f"{NS_PUBSUB}#event"
NS_SHIM = "http://jabber.org/protocol/shim"
PUBSUB = f"{{{NS_PUBSUB}}}pubsub"
OWNER = f"{{{NS_OWNER}}}pubsub"
#: the features every host implements (disco#info lists them)
FEATURES = frozenset(
    f"{NS_PUBSUB}#{name}"
    for name in (
        "access-open",
        "access-presence",
        "access-roster",
        "access-whitelist",
        "config-node",
        "create-and-configure",
        "create-nodes",
        "delete-items",
        "delete-nodes",
        "filtered-notifications",
        "item-ids",
        "manage-affiliations",
        "meta-data",
        "modify-affiliations",
        "multi-subscribe",
        "persistent-items",
        "publish",
        "publish-options",
        "purge-nodes",
        "retract-items",
        "retrieve-affiliations",
        "retrieve-default",
        "retrieve-items",
        "retrieve-subscriptions",
        "subscribe",
        "subscription-options",
        "instant-nodes",
        "last-published",
    )
) | {NS_PUBSUB}


def _q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


class PubsubHost(ABC):
    """Request handling common to the service and PEP; see the module docstring."""

    def __init__(self) -> None:
        #: work that follows the reply now being made (the last item after a subscription)
        self.after: list[Callable[[], None]] = []

    # --- what subclasses provide --------------------------------------------------------

    @abstractmethod
    def node(self, name: str) -> Node | None:
        """The node if it exists (implicitly or explicitly)."""

    @abstractmethod
    def nodes(self) -> Iterable[Node]:
        """Every node with a record."""

    @abstractmethod
    def may_create(self, session: Session, name: str) -> bool: ...

    @abstractmethod
    def exists(self, name: str) -> bool:
        """Whether creating ``name`` would conflict."""

    @abstractmethod
    def valid_name(self, name: str) -> bool: ...

    @abstractmethod
    def save(self, node: Node) -> None:
        """Keep the node's record (durably)."""

    @abstractmethod
    def remove(self, node: Node) -> None:
        """The node was deleted: its record and items go."""

    @abstractmethod
    def roster(self, node: Node) -> Roster | None:
        """The owner's roster, for the presence and roster access models."""

    @abstractmethod
    def publish_target(
        self, session: Session, name: str, options: dict[str, list[str]] | None
    ) -> Node:
        """The node a publish goes to (auto-created, configured by the publish-options
        where the host does that)."""

    @abstractmethod
    def publish(self, session: Session, node: Node, item: Item, payload: etree._Element) -> None:
        """Store and announce a checked item."""

    @abstractmethod
    def items(self, session: Session, node: Node) -> list[Item]:
        """The node's items, oldest first, after checking that the requester may read."""

    @abstractmethod
    def retract(self, session: Session, node: Node, ids: list[str], notify: bool) -> None: ...

    @abstractmethod
    def purge(self, node: Node) -> None: ...

    @abstractmethod
    def subscribable(self, session: Session, name: str) -> Node:
        """The node to subscribe to (implicit nodes get a record), after checks."""

    @abstractmethod
    def subscribed(self, node: Node, subscription: Subscription) -> None:
        """A new subscription: notifications start (and the last item may follow)."""

    @abstractmethod
    def unsubscribed(self, node: Node, subscription: Subscription) -> None:
        """A subscription ended."""

    @abstractmethod
    def notify(self, node: Node, event: etree._Element, only: JID | None = None) -> None:
        """Send an event (delete, purge, retract) to the node's subscribers."""

    # --- dispatch -----------------------------------------------------------------------

    def iq(self, session: Session, iq: etree._Element, payload: etree._Element) -> None:
        kind = iq.get("type", "")
        try:
            ops = self._ops(kind, payload)
            request = next((child for child in payload if isinstance(child.tag, str)), None)
            if request is None:
                raise Refusal("bad-request", text="no request in the pubsub element")
            op = ops.get(request.tag)
            if op is None:
                raise unsupported(etree.QName(request).localname)
            reply = op(session, iq, payload, request)
        except Refusal as refusal:
            session.send(refusal.reply(iq))
        except NotAcceptable as exc:
            session.send(error_reply(iq, "not-acceptable", str(exc)))
        except (FormError, PayloadError) as exc:
            session.send(error_reply(iq, "bad-request", str(exc)))
        except Exception:  # a bug costs the request, not the stream
            log.exception("pubsub request failed", extra={"fields": {"jid": session.jid_text}})
            session.send(error_reply(iq, "internal-server-error"))
        else:
            if kind == "set":  # the result confirms a stored change
                session.conn.sync_before_output = True
            session.send(iq_result(iq, reply))
            after, self.after = self.after, []
            for step in after:
                step()
        finally:
            self.after = []

    def _ops(self, kind: str, payload: etree._Element) -> dict[str, Op]:
        if payload.tag == PUBSUB:
            if kind == "set":
                return {
                    _q(NS_PUBSUB, "create"): self._create,
                    _q(NS_PUBSUB, "publish"): self._publish,
                    _q(NS_PUBSUB, "retract"): self._retract,
                    _q(NS_PUBSUB, "subscribe"): self._subscribe,
                    _q(NS_PUBSUB, "unsubscribe"): self._unsubscribe,
                    _q(NS_PUBSUB, "options"): self._set_options,
                }
            return {
                _q(NS_PUBSUB, "items"): self._items,
                _q(NS_PUBSUB, "subscriptions"): self._subscriptions,
                _q(NS_PUBSUB, "affiliations"): self._affiliations,
                _q(NS_PUBSUB, "options"): self._get_options,
                _q(NS_PUBSUB, "default"): self._default_options,
            }
        if kind == "set":
            return {
                _q(NS_OWNER, "configure"): self._set_configure,
                _q(NS_OWNER, "delete"): self._delete,
                _q(NS_OWNER, "purge"): self._purge,
                _q(NS_OWNER, "affiliations"): self._set_affiliations,
            }
        return {
            _q(NS_OWNER, "configure"): self._get_configure,
            _q(NS_OWNER, "default"): self._default_config,
            _q(NS_OWNER, "subscriptions"): self._node_subscriptions,
            _q(NS_OWNER, "affiliations"): self._node_affiliations,
        }

    # --- helpers ------------------------------------------------------------------------

    @staticmethod
    def _name(request: etree._Element) -> str:
        name = request.get("node")
        if not name:
            raise Refusal("bad-request", "nodeid-required")
        return name

    def _existing(self, name: str) -> Node:
        node = self.node(name)
        if node is None:
            raise Refusal("item-not-found", text=f"no node {name!r}")
        return node

    def _owned(self, session: Session, request: etree._Element) -> Node:
        node = self._existing(self._name(request))
        if not node.is_owner(session.bare):
            raise Refusal("forbidden", text="only an owner may do that")
        return node

    def check_access(self, session: Session, node: Node) -> None:
        refusal = node.refusal(session.bare, self.roster(node))
        if refusal is not None:
            raise Refusal(*refusal)

    @staticmethod
    def _form(parent: etree._Element | None) -> dict[str, list[str]] | None:
        if parent is None:
            return None
        x = forms.find(parent)
        return None if x is None else forms.submitted(x)

    @staticmethod
    def _jid(request: etree._Element, session: Session) -> JID:
        """The 'jid' of a subscription request, which must be the requester's own."""
        try:
            jid = parse_jid(request.get("jid", ""))
        except InvalidJID:
            raise Refusal("bad-request", "invalid-jid") from None
        if jid.bare != session.bare:
            raise Refusal("bad-request", "invalid-jid", "not your own JID")
        return jid

    @staticmethod
    def _pubsub(namespace: str = NS_PUBSUB) -> etree._Element:
        return etree.Element(_q(namespace, "pubsub"), nsmap={None: namespace})

    # --- create, configure, delete, purge -----------------------------------------------

    def _create(
        self, session: Session, iq: Element, payload: Element, request: Element
    ) -> etree._Element | None:
        name = request.get("node") or ""
        instant = not name
        if instant:
            name = f"instant/{secrets.token_hex(8)}"
        if not self.valid_name(name):
            raise Refusal("not-acceptable", text=f"{name!r} cannot name a node here")
        if not self.may_create(session, name):
            raise Refusal("forbidden", text="you may not create nodes here")
        if self.exists(name):
            raise Refusal("conflict", text=f"node {name!r} exists")
        config = Config()
        values = self._form(payload.find(_q(NS_PUBSUB, "configure")))
        if values:
            config = config.updated(values)
        node = self.node(name) or Node(name)
        node.config = config
        node.affiliations[session.bare] = "owner"
        self.save(node)
        if not instant:
            return None
        result = self._pubsub()
        etree.SubElement(result, _q(NS_PUBSUB, "create"), node=name)
        return result

    def _get_configure(
        self, session: Session, iq: Element, payload: Element, request: Element
    ) -> etree._Element:
        node = self._owned(session, request)
        result = self._pubsub(NS_OWNER)
        configure = etree.SubElement(result, _q(NS_OWNER, "configure"), node=node.name)
        configure.append(node.config.form())
        return result

    def _set_configure(
        self, session: Session, iq: Element, payload: Element, request: Element
    ) -> None:
        node = self._owned(session, request)
        x = forms.find(request)
        if x is None:
            raise Refusal("bad-request", text="no configuration form")
        values = forms.submitted(x)
        if values:
            node.config = node.config.updated(values)
            if not node.config.persist_items:
                node.items.clear()
            while len(node.items) > max(node.config.max_items, 1):
                node.items.popitem(last=False)
            self.save(node)

    def _default_config(
        self, session: Session, iq: Element, payload: Element, request: Element
    ) -> etree._Element:
        result = self._pubsub(NS_OWNER)
        etree.SubElement(result, _q(NS_OWNER, "default")).append(Config().form())
        return result

    def _delete(self, session: Session, iq: Element, payload: Element, request: Element) -> None:
        node = self._owned(session, request)
        if node.config.notify_delete:
            event = event_element()
            etree.SubElement(event, _q(NS_EVENT, "delete"), node=node.name)
            self.notify(node, event)
        for subscription in list(node.subscriptions):
            self.unsubscribed(node, subscription)
        node.subscriptions.clear()
        self.remove(node)

    def _purge(self, session: Session, iq: Element, payload: Element, request: Element) -> None:
        node = self._owned(session, request)
        self.purge(node)
        event = event_element()
        etree.SubElement(event, _q(NS_EVENT, "purge"), node=node.name)
        self.notify(node, event)

    # --- publish and retract ------------------------------------------------------------

    def _publish(
        self, session: Session, iq: Element, payload: Element, request: Element
    ) -> etree._Element:
        name = self._name(request)
        items = request.findall(_q(NS_PUBSUB, "item"))
        if len(items) > 1:
            raise Refusal("bad-request", "invalid-payload", "publish one item at a time")
        if not items:
            raise Refusal("bad-request", "item-required")
        item_el = items[0]
        payloads = [child for child in item_el if isinstance(child.tag, str)]
        if len(payloads) > 1:
            raise Refusal("bad-request", "invalid-payload", "an item carries one payload")
        if not payloads:
            raise Refusal("bad-request", "payload-required")
        options = self._form(payload.find(_q(NS_PUBSUB, "publish-options")))
        if options:
            Config().updated(options, PUBLISH_OPTIONS)  # well-formed before anything else
        node = self.publish_target(session, name, options or None)
        if not node.may_publish(session.bare):
            raise Refusal("forbidden", text="you may not publish to this node")
        if options and node.config.differs(options) is not None:
            raise Refusal("conflict", "precondition-not-met", f"{node.config.differs(options)}")
        data = element_bytes(payloads[0])
        if len(data) > node.config.max_payload_size:
            raise Refusal("not-acceptable", "payload-too-big")
        item_id = item_el.get("id") or secrets.token_hex(8)
        self.publish(session, node, Item(item_id, data, str(session.bare)), payloads[0])
        result = self._pubsub()
        publish = etree.SubElement(result, _q(NS_PUBSUB, "publish"), node=node.name)
        etree.SubElement(publish, _q(NS_PUBSUB, "item"), id=item_id)
        return result

    def _retract(self, session: Session, iq: Element, payload: Element, request: Element) -> None:
        node = self._existing(self._name(request))
        ids = [el.get("id") or "" for el in request.findall(_q(NS_PUBSUB, "item"))]
        if not ids or not all(ids):
            raise Refusal("bad-request", "item-required")
        if not (node.is_owner(session.bare) or node.may_publish(session.bare)):
            raise Refusal("forbidden", text="only publishers and owners retract")
        notify = request.get("notify") in ("1", "true") or node.config.notify_retract
        self.retract(session, node, ids, notify)

    # --- items ----------------------------------------------------------------------------

    def _items(
        self, session: Session, iq: Element, payload: Element, request: Element
    ) -> etree._Element:
        node = self._existing(self._name(request))
        self.check_access(session, node)
        wanted = [el.get("id") for el in request.findall(_q(NS_PUBSUB, "item"))]
        found = self.items(session, node)
        if wanted:
            found = [item for item in found if item.id in wanted]
            if not found:
                raise Refusal("item-not-found", text="no such item")
        elif (limit := request.get("max_items")) is not None:
            try:
                count = int(limit)
            except ValueError:
                raise Refusal("bad-request", text="max_items must be a number") from None
            found = found[max(0, len(found) - count) :] if count > 0 else []
        result = self._pubsub()
        items = etree.SubElement(result, _q(NS_PUBSUB, "items"), node=node.name)
        for item in found:
            items.append(item_element(NS_PUBSUB, item, True))
        return result

    # --- subscriptions ------------------------------------------------------------------

    def _subscribe(
        self, session: Session, iq: Element, payload: Element, request: Element
    ) -> etree._Element:
        name = self._name(request)
        jid = self._jid(request, session)
        node = self.subscribable(session, name)
        self.check_access(session, node)
        values = self._form(payload.find(_q(NS_PUBSUB, "options")))
        existing = node.subscriptions_of(jid)
        if existing and values is None:
            subscription = existing[0]
        else:
            subscription = Subscription(jid)
            if values:
                subscription.set_options(values)
            node.subscriptions.append(subscription)
            self.save(node)
            self.subscribed(node, subscription)
        result = self._pubsub()
        result.append(_subscription_element(NS_PUBSUB, node.name, subscription))
        return result

    def _unsubscribe(
        self, session: Session, iq: Element, payload: Element, request: Element
    ) -> None:
        name = self._name(request)
        jid = self._jid(request, session)
        node = self._existing(name)
        subscription = self._one_subscription(node, jid, request.get("subid"))
        node.subscriptions.remove(subscription)
        self.unsubscribed(node, subscription)
        self.save(node)

    def _one_subscription(self, node: Node, jid: JID, subid: str | None) -> Subscription:
        subscriptions = node.subscriptions_of(jid)
        if not subscriptions:
            raise Refusal("unexpected-request", "not-subscribed")
        if subid:
            found = next((s for s in subscriptions if s.subid == subid), None)
            if found is None:
                raise Refusal("not-acceptable", "invalid-subid")
            return found
        if len(subscriptions) > 1:
            raise Refusal("bad-request", "subid-required")
        return subscriptions[0]

    def _options(self, session: Session, request: Element) -> tuple[Node, Subscription]:
        node = self._existing(self._name(request))
        try:
            jid = parse_jid(request.get("jid", ""))
        except InvalidJID:
            raise Refusal("bad-request", "jid-required") from None
        if jid.bare != session.bare:
            raise Refusal("forbidden", text="only your own subscriptions")
        return node, self._one_subscription(node, jid, request.get("subid"))

    def _get_options(
        self, session: Session, iq: Element, payload: Element, request: Element
    ) -> etree._Element:
        node, subscription = self._options(session, request)
        result = self._pubsub()
        options = etree.SubElement(
            result, _q(NS_PUBSUB, "options"), node=node.name, jid=str(subscription.jid)
        )
        options.set("subid", subscription.subid)
        options.append(subscription.options())
        return result

    def _set_options(
        self, session: Session, iq: Element, payload: Element, request: Element
    ) -> None:
        node, subscription = self._options(session, request)
        values = self._form(request)
        if values is None:
            raise Refusal("bad-request", "invalid-options", "no options form")
        subscription.set_options(values)
        self.save(node)

    def _default_options(
        self, session: Session, iq: Element, payload: Element, request: Element
    ) -> etree._Element:
        result = self._pubsub()
        default = etree.SubElement(result, _q(NS_PUBSUB, "default"))
        default.append(Subscription(session.bare).options())
        return result

    def _subscriptions(
        self, session: Session, iq: Element, payload: Element, request: Element
    ) -> etree._Element:
        only = request.get("node")
        result = self._pubsub()
        listing = etree.SubElement(result, _q(NS_PUBSUB, "subscriptions"))
        for node in self.nodes():
            if only is not None and node.name != only:
                continue
            for subscription in node.subscriptions:
                if subscription.jid.bare == session.bare:
                    listing.append(_subscription_element(NS_PUBSUB, node.name, subscription))
        return result

    def _node_subscriptions(
        self, session: Session, iq: Element, payload: Element, request: Element
    ) -> etree._Element:
        node = self._owned(session, request)
        result = self._pubsub(NS_OWNER)
        listing = etree.SubElement(result, _q(NS_OWNER, "subscriptions"), node=node.name)
        for subscription in node.subscriptions:
            el = _subscription_element(NS_OWNER, None, subscription)
            listing.append(el)
        return result

    # --- affiliations -------------------------------------------------------------------

    def _affiliations(
        self, session: Session, iq: Element, payload: Element, request: Element
    ) -> etree._Element:
        only = request.get("node")
        result = self._pubsub()
        listing = etree.SubElement(result, _q(NS_PUBSUB, "affiliations"))
        for node in self.nodes():
            affiliation = node.affiliation(session.bare)
            if affiliation != "none" and (only is None or node.name == only):
                etree.SubElement(
                    listing, _q(NS_PUBSUB, "affiliation"), node=node.name, affiliation=affiliation
                )
        return result

    def _node_affiliations(
        self, session: Session, iq: Element, payload: Element, request: Element
    ) -> etree._Element:
        node = self._owned(session, request)
        result = self._pubsub(NS_OWNER)
        listing = etree.SubElement(result, _q(NS_OWNER, "affiliations"), node=node.name)
        for jid, affiliation in node.affiliations.items():
            etree.SubElement(
                listing, _q(NS_OWNER, "affiliation"), jid=str(jid), affiliation=affiliation
            )
        return result

    def _set_affiliations(
        self, session: Session, iq: Element, payload: Element, request: Element
    ) -> None:
        node = self._owned(session, request)
        changes: dict[JID, str] = {}
        for el in request.iterchildren(_q(NS_OWNER, "affiliation")):
            try:
                jid = parse_jid(el.get("jid", "")).bare
            except InvalidJID:
                raise Refusal("bad-request", "invalid-jid") from None
            affiliation = el.get("affiliation", "")
            if affiliation not in AFFILIATIONS:
                raise Refusal("bad-request", text=f"unknown affiliation {affiliation!r}")
            changes[jid] = affiliation
        affiliations = dict(node.affiliations)
        for jid, affiliation in changes.items():
            if affiliation == "none":
                affiliations.pop(jid, None)
            else:
                affiliations[jid] = affiliation
        if "owner" not in affiliations.values():
            raise Refusal("not-acceptable", text="a node keeps at least one owner")
        node.affiliations = affiliations
        for subscription in [s for s in node.subscriptions if node.affiliation(s.jid) == "outcast"]:
            node.subscriptions.remove(subscription)
            self.unsubscribed(node, subscription)
        self.save(node)


# --- elements ---------------------------------------------------------------------------


def event_element() -> etree._Element:
    return etree.Element(_q(NS_EVENT, "event"), nsmap={None: NS_EVENT})


def item_element(namespace: str, item: Item, with_payload: bool) -> etree._Element:
    el = etree.Element(_q(namespace, "item"), id=item.id)
    if item.publisher:
        el.set("publisher", item.publisher)
    if with_payload and item.payload:
        payload = parse_element(item.payload)
        if payload is not None:
            el.append(payload)
    return el


def _subscription_element(
    namespace: str, node: str | None, subscription: Subscription
) -> etree._Element:
    el = etree.Element(_q(namespace, "subscription"))
    if node is not None:
        el.set("node", node)
    el.set("jid", str(subscription.jid))
    el.set("subid", subscription.subid)
    el.set("subscription", "subscribed")
    return el


def notification(
    frm: str, to: JID, event: etree._Element, kind: str = "headline"
) -> etree._Element:
    message = element("message", to=str(to), type=kind, id=secrets.token_hex(8))
    message.set("from", frm)
    message.append(event)
    return message
