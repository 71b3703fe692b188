"""Topics to pubsub notifications (SPEC "Where protocols meet", item 4): the service's
one consumer of the core.

The queue ``xmpp.pubsub`` (transient, exclusive to the service) is bound to ``amq.topic``
once per node that has subscribers, with the node's name as an MQTT filter; every message
published on a matching topic in any protocol arrives once, and becomes one notification
per subscribed JID whose node attribute names the concrete topic.  The event is encoded
once per message; only the addressing is written per recipient.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import secrets
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from lxml import etree

from broker.errors import BrokerError
from broker.log import event
from broker.message import Message
from broker.queues import Queue
from broker.topics import TOPIC_EXCHANGE, TopicTrie, filter_to_pattern, key_to_mqtt, mqtt_to_key
from protocols.xmpp.jid import JID
from protocols.xmpp.pubsub import payload as payloads
from protocols.xmpp.pubsub.host import NS_EVENT, NS_SHIM, event_element
from protocols.xmpp.pubsub.nodes import Node, Subscription
from protocols.xmpp.stream import NS_CLIENT

if TYPE_CHECKING:
    from protocols.xmpp.pubsub.service import TopicService

log = logging.getLogger("broker.xmpp")

QUEUE = "xmpp.pubsub"
#: notifications waiting for the service at most; beyond, the oldest go (as a slow MQTT
#: subscriber's session drops them)
MAX_QUEUED = 100_000
#: routing keys (and topics) whose recipients (and event heads) are kept
MAX_TARGETS = 10_000

#: bytes a subscriber's stream may have waiting before its notifications are dropped
MAX_BEHIND = 1 << 20
#: unsent bytes of a subscriber's stream beyond which publishers wait for it
BACKLOG = 1 << 16


class Target(NamedTuple):
    """A recipient of a node's notifications and the bytes around each event for it."""

    bare: JID
    resource: str
    with_payload: bool
    opening: bytes
    closing: bytes


Recipients = list[Target]


#: where a message's item id is cached (``Message.cache``)
ITEM_ID = ("xmpp-pubsub", "id")


def item_id(message: Message) -> str:
    """A message's item id: its message_id, else a digest of a retained body (stable
    across restarts, kept on the message), else a fresh one (a message is notified once)."""
    cache = message.cache
    if cache is not None and (found := cache.get(ITEM_ID)) is not None:
        return found
    if message.properties.message_id:
        return message.properties.message_id
    if not (message.extra and message.extra.get("retain")):
        return fresh_id()
    digest = hashlib.sha1(message.body)
    digest.update((message.properties.content_type or "").encode())
    if cache is None:
        cache = message.cache = {}
    found = cache[ITEM_ID] = digest.hexdigest()[:16]
    return found


def fresh_id() -> str:
    """An id unique to this run of the broker (a random prefix, then a counter)."""
    return f"{_RUN}-{next(_COUNTER)}"


_RUN = secrets.token_hex(4)
_RUN_PREFIX = f"{_RUN}-".encode()
_COUNTER = itertools.count(1)


_ITEM_END = b"</item></items></event>"


def _cleared(message: Message) -> bool:
    """A retained value cleared: its retraction was announced, it is no notification."""
    return not message.body and bool(message.extra and message.extra.get("retain"))


def _attr(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace("'", "&apos;")
        .replace('"', "&quot;")
    )


class NotificationBridge:
    """The queue consumer of the service; ``watch``/``unwatch`` follow the subscriptions."""

    def __init__(self, service: TopicService) -> None:
        self.service = service
        self.front = service.front
        self.vhost = service.vhost
        #: binding pattern -> node names with subscriptions (a pattern may stand for one)
        self.nodes: TopicTrie[str] = TopicTrie()
        self._watched: set[str] = set()
        self._head = f"<message xmlns='{NS_CLIENT}' from='{_attr(service.jid)}' to='"
        self._targets: dict[str, Recipients] = {}
        self._items_heads: dict[tuple[str, str | None], tuple[bytes, bytes]] = {}
        self.queue: Queue | None = None
        try:
            self.queue = self.vhost.declare_queue(
                QUEUE,
                durable=False,
                exclusive_owner=self,
                arguments={"x-max-length": MAX_QUEUED},
            )
        except BrokerError as exc:
            event(log, logging.WARNING, "pubsub queue unavailable", error=exc.message)
            return
        self.queue.add_consumer(self)
        for node in service.nodes():
            if node.subscriptions:
                self.watch(node.name)

    def watch(self, name: str) -> None:
        if name in self._watched or self.queue is None:
            return
        self._watched.add(name)
        self.changed()
        pattern = filter_to_pattern(name)
        self.nodes.add(pattern, name)
        self.vhost.bind(self.queue, TOPIC_EXCHANGE, pattern, None)

    def unwatch(self, name: str) -> None:
        if name not in self._watched or self.queue is None:
            return
        self._watched.discard(name)
        self.changed()
        pattern = filter_to_pattern(name)
        self.nodes.remove(pattern, name)
        self.vhost.unbind(self.queue, TOPIC_EXCHANGE, pattern, None)

    # --- the queue consumer protocol ------------------------------------------------------

    def ready(self) -> bool:
        return True

    def deliver(self, queue: Queue, message: Message, seq: int, redelivered: bool) -> bool:
        if not _cleared(message) and not (message.expires_at and message.expired()):
            topic = message.topic or key_to_mqtt(message.routing_key)
            self._notify(message.routing_key, topic, [message], None)
        return False

    def deliver_settled(self, queue: Queue, messages: list[Message]) -> int:
        """A run of one publisher's messages on one topic: recipients found once, and
        each recipient's notifications for the whole run in one write."""
        first = messages[0]
        if first.expires_at is not None:
            return 0  # expiry is checked one by one (``deliver``)
        run = [m for m in messages if not _cleared(m)]
        if run:
            key = first.routing_key
            self._notify(key, first.topic or key_to_mqtt(key), run, None)
        return len(messages)

    def queue_deleted(self, queue: Queue) -> None:
        event(log, logging.WARNING, "pubsub queue deleted", queue=queue.name)
        self.queue = None
        self._watched.clear()
        self.changed()
        self.nodes = TopicTrie()

    # --- notifications --------------------------------------------------------------------

    def changed(self) -> None:
        """Some node's subscriptions or configuration changed: recompute recipients."""
        self._targets.clear()

    def _recipients(self, key: str, topic: str, only: Subscription | None) -> Recipients:
        """The recipients a message on ``topic`` reaches (or ``only`` reaches), one per
        JID; cached per routing key, since telemetry publishes the same few topics over
        and over."""
        if only is None:
            found = self._targets.get(key)
            if found is None:
                if len(self._targets) >= MAX_TARGETS:
                    self._targets.clear()
                found = self._targets[key] = self._find(key, topic, None)
            return found
        return self._find(key, topic, only)

    def _find(self, key: str, topic: str, only: Subscription | None) -> Recipients:
        acl = self.service.broker.acl
        found: dict[JID, tuple[list[str], bool, str]] = {}
        for name in self.nodes.match(key):
            node = self.service.records.get(name)
            if node is None or not node.config.deliver_notifications:
                continue
            for subscription in node.subscriptions:
                if not subscription.deliver or only is not None and subscription is not only:
                    continue
                jid = subscription.jid
                if acl and not acl.check(jid.local, "", topic, "subscribe"):
                    continue
                subids, payload, kind = found.get(jid, ([], False, node.config.notification_type))
                subids.append(subscription.subid)
                found[jid] = (subids, payload or node.config.deliver_payloads, kind)
        return [
            self._target(jid, kind, subids, payload)
            for jid, (subids, payload, kind) in found.items()
        ]

    def _target(self, jid: JID, kind: str, subids: list[str], with_payload: bool) -> Target:
        """A recipient with its notification's opening and closing bytes (RFC 6120 leaves
        a message's id optional: none is given), SubID headers when it has several
        subscriptions (XEP-0060 12.4)."""
        opening = f"{self._head}{_attr(str(jid))}' type='{kind}'>".encode()
        closing = b"</message>"
        if len(subids) > 1:
            closing = (
                f"<headers xmlns='{NS_SHIM}'>"
                + "".join(f"<header name='SubID'>{_attr(s)}</header>" for s in subids)
                + "</headers></message>"
            ).encode()
        return Target(jid.bare, jid.resource, with_payload, opening, closing)

    def _notify(
        self, key: str, topic: str, messages: list[Message], only: Subscription | None
    ) -> None:
        """Notifications of ``messages`` (all on ``topic``) to their recipients, each
        event encoded once and each recipient's share written at once."""
        targets = self._recipients(key, topic, only)
        if not targets:
            return
        plain: list[bytes] | None = None
        full: list[bytes] | None = None
        for target in targets:
            if target.with_payload:
                if full is None:
                    full = self._events(topic, messages, True)
                events = full
            else:
                if plain is None:
                    plain = self._events(topic, messages, False)
                events = plain
            opening, closing = target.opening, target.closing
            self._deliver(target, opening + (closing + opening).join(events) + closing)
        self.front.counts.messages_out += len(targets) * len(messages)

    def _events(self, topic: str, messages: list[Message], with_payload: bool) -> list[bytes]:
        """Each message's items event (a run shares topic and properties)."""
        events = []
        publisher: str | None = None
        before = after = fresh_head = b""
        first = messages[0]
        encode = payloads.encoder(first.properties.content_type) if with_payload else None
        # ordinary publishes (the run shares their properties) all get fresh ids
        fresh = not first.properties.message_id and not (first.extra and first.extra.get("retain"))
        for message in messages:
            if not before or message.publisher != publisher:
                publisher = message.publisher
                heads = self._items_heads.get((topic, publisher))
                before, after = heads or self._item_head(topic, publisher)
                fresh_head = before + _RUN_PREFIX
            if fresh:  # fresh_id's form, its prefix joined once per publisher
                head, ident_bytes = fresh_head, str(next(_COUNTER)).encode()
            else:
                ident = item_id(message)
                if not ident.startswith(_RUN):  # a client's id may need escaping, ours never
                    ident = _attr(ident)
                head, ident_bytes = before, ident.encode()
            if encode is not None:
                parts = (head, ident_bytes, after, b">", encode(message.body), _ITEM_END)
            else:
                parts = (head, ident_bytes, after, b"/></items></event>")
            events.append(b"".join(parts))
        return events

    def _item_head(self, topic: str, publisher: str | None) -> tuple[bytes, bytes]:
        """An items event's bytes before and after the item id, kept per topic and
        publisher."""
        if len(self._items_heads) >= MAX_TARGETS:
            self._items_heads.clear()
        before = f"<event xmlns='{NS_EVENT}'><items node='{_attr(topic)}'><item id='"
        after = "'"
        if publisher:
            after += f" publisher='{_attr(publisher)}@{_attr(self.front.domain)}'"
        around = self._items_heads[topic, publisher] = (before.encode(), after.encode())
        return around

    def _deliver(self, target: Target, data: bytes) -> None:
        """To the full JID, or every available resource of a bare one.  Past ``BACKLOG``
        bytes not yet sent, publishers wait for the stream (as for an MQTT subscriber)
        until it is out, or the stream turns out slow; past ``MAX_BEHIND`` it misses
        notifications (headlines: a slow reader loses some rather than grow the broker's
        memory)."""
        resources = self.front.sessions.get(target.bare)
        if not resources:
            return
        if target.resource:
            found = resources.get(target.resource)
            sessions = [found] if found is not None else []
        else:
            sessions = [s for s in resources.values() if s.available]
        for session in sessions:
            conn = session.conn
            if len(conn.outbox) < MAX_BEHIND:
                session.send(data)
                if conn.on_drained is None and len(conn.outbox) > BACKLOG:
                    flow = self.front.broker.flow
                    flow.backlog(conn)
                    conn.on_drained = partial(flow.drained, conn)

    def send_retained(self, node: Node, subscription: Subscription) -> None:
        """The last item of each topic the node names, to a new subscription."""
        for topic, message in self.service.broker.retained.match(node.name):
            self._notify(mqtt_to_key(topic), topic, [message], subscription)

    def retracted(self, topic: str, ids: list[str]) -> None:
        """Retractions on ``topic`` to every subscription of a node naming it."""
        targets = self._recipients(mqtt_to_key(topic), topic, None)
        if not targets:
            return
        event = event_element()
        items = etree.SubElement(event, f"{{{NS_EVENT}}}items", node=topic)
        for retracted in ids:
            etree.SubElement(items, f"{{{NS_EVENT}}}retract", id=retracted)
        data = etree.tostring(event)
        for target in targets:
            self._deliver(target, target.opening + data + target.closing)

    def send_event(self, node: Node, event_el: etree._Element) -> None:
        """A node event (delete, purge) to the node's own subscriptions."""
        body = etree.tostring(event_el)
        jids: dict[JID, list[str]] = {}
        for subscription in node.subscriptions:
            jids.setdefault(subscription.jid, []).append(subscription.subid)
        for jid, subids in jids.items():
            target = self._target(jid, node.config.notification_type, subids, True)
            self._deliver(target, target.opening + body + target.closing)
