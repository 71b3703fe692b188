"""MQTT sessions: subscriptions, inflight messages and QoS 2 state of one client id.

A session owns one core queue (``mqtt.session.<client id>``) bound to ``amq.topic`` with one
binding per subscription, as RabbitMQ's MQTT plugin does, so MQTT subscribers are ordinary
queues to every other protocol.  The session is that queue's consumer for its whole life:
while no connection is attached it is not ready and messages wait in the queue (bounded by
``max_queued``).  A persistent session (MQTT 3.1.1 clean session 0, MQTT 5 Session Expiry
Interval > 0) has a durable queue and survives disconnects and restarts; its subscriptions,
QoS 2 state and expiry are stored as a blob.  The front end ends it when it expires.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import msgpack

from broker.queues import Entry
from broker.topics import TOPIC_EXCHANGE, filter_matches, filter_to_pattern
from protocols.mqtt import shared
from protocols.mqtt.limits import OUTPUT_HIGH_WATER
from protocols.mqtt.mapping import V3_LIVE, encode_qos0, message_qos, message_topic

if TYPE_CHECKING:
    from broker.message import Message
    from broker.queues import Queue
    from broker.vhost import VHost
    from protocols.mqtt.connection import MQTTConnection

#: Inflight states of an outgoing QoS 1/2 message.
AWAIT_ACK, AWAIT_COMP = 0, 1


class Inflight:
    """An outgoing QoS 1/2 message awaiting PUBACK/PUBREC (or, for QoS 2, PUBCOMP)."""

    __slots__ = ("queue", "seq", "message", "qos", "retain", "state", "subscription_ids")

    def __init__(
        self,
        queue: Queue | None,
        seq: int | None,
        message: Message,
        qos: int,
        retain: bool,
        subscription_ids: list[int] | None,
    ) -> None:
        self.queue = queue  # to ack once the client has; None for a retained message
        self.seq = seq
        self.message = message
        self.qos = qos
        self.retain = retain
        self.state = AWAIT_ACK
        self.subscription_ids = subscription_ids


class Options:
    """MQTT 5 options of one subscription, for subscriptions that have any."""

    __slots__ = ("no_local", "retain_as_published", "subscription_id")

    def __init__(self, no_local: bool, retain_as_published: bool, subscription_id: int) -> None:
        self.no_local = no_local
        self.retain_as_published = retain_as_published
        self.subscription_id = subscription_id

    def record(self) -> list:
        return [self.no_local, self.retain_as_published, self.subscription_id]


class Session:
    def __init__(
        self,
        vhost: VHost,
        client_id: str,
        *,
        expiry_interval: int | None,
        max_inflight: int,
        max_queued: int,
        persist: Callable[[bytes | None], None],
    ) -> None:
        self.vhost = vhost
        self._persist = persist
        self.client_id = client_id
        #: seconds the session outlives its connection: 0 not at all, None for ever
        self.expiry_interval = expiry_interval
        self.durable = expiry_interval != 0
        #: wall-clock time an offline session with an expiry interval ends
        self.ends_at: float | None = None
        #: publishes the will of the last connection once its delay has passed
        self.pending_will: Callable[[], None] | None = None
        self._stored = False
        self.max_inflight = max_inflight
        self.subscriptions: dict[str, int] = {}
        #: packet id -> its delivery awaiting the client: a record, or for a batch from
        #: the session's own queue, the queue's entry
        self.inflight: dict[int, Inflight | Entry] = {}
        #: sets kept as dicts (keys only): an empty dict is a third of an empty set, and
        #: most sessions never fill these
        self.incoming_qos2: dict[int, None] = {}
        #: subscriptions the ACL allows only in part: their deliveries are checked one by one
        self.filtered: dict[str, None] = {}
        #: MQTT 5 options of the subscriptions that have any
        self.options: dict[str, Options] = {}
        #: shared subscriptions: ``$share/...`` filter -> QoS, and their group queues
        self.shared: dict[str, int] = {}
        self._shared_queues: dict[str, Queue] = {}
        self.connection: MQTTConnection | None = None
        self._next_id = 1
        self._only_qos: int | None = None
        self._max_queued = max_queued
        self.queue: Queue | None = None
        if queue_name(client_id) in vhost.queues:
            self._open_queue()

    def _open_queue(self) -> Queue:
        """The session's queue, made on the first subscription: a client that only
        publishes costs no queue."""
        queue = self.queue
        if queue is None:
            name = queue_name(self.client_id)
            queue = self.vhost.queues.get(name) or self.vhost.declare_queue(
                name,
                durable=self.durable,
                arguments={"x-max-length": self._max_queued} if self._max_queued else None,
            )
            self.queue = queue
            queue.add_consumer(self)
        return queue

    def dispatch(self) -> None:
        """Let the queues deliver whatever the window and the buffer have room for now."""
        if self.queue is not None:
            self.queue.dispatch()
        if self._shared_queues:
            for queue in list(self._shared_queues.values()):
                queue.dispatch()

    # -- Consumer protocol --------------------------------------------------------------

    def ready(self) -> bool:
        conn = self.connection
        return (
            conn is not None
            and len(conn.outbox) <= OUTPUT_HIGH_WATER
            and len(self.inflight) < self.max_inflight
        )

    def room(self) -> int:
        conn = self.connection
        if conn is None or len(conn.outbox) > OUTPUT_HIGH_WATER:
            return 0
        return self.max_inflight - len(self.inflight)

    def deliver_entries(self, queue: Queue, entries: list[Entry]) -> list[bool]:
        """A batch from the session's own queue under one plain subscription in one write
        (a QoS 1 backlog drains by the window's room at each round of PUBACKs); anything
        else one by one.  A QoS 1 batch of one shape is laid out at once, with a run of
        packet ids, and its queue entries are its inflight records."""
        granted = self._only_qos
        conn = self.connection
        if queue is not self.queue or granted is None or self.filtered:
            return [self.deliver(queue, e.message, e.seq, e.redelivered) for e in entries]
        count = len(entries)
        first_id = self._next_id
        packet_ids = range(first_id, first_id + count)
        inflight = self.inflight
        if (
            granted == 1
            and count > 1
            and first_id + count <= 65536
            and inflight.keys().isdisjoint(packet_ids)
        ):
            data = conn.qos1_run([entry.message for entry in entries], packet_ids)
            if data is not None:
                self._next_id = (first_id + count - 1) % 65535 + 1
                inflight.update(zip(packet_ids, entries, strict=True))
                conn.send_publishes(data, count)
                return [True] * count
        publish_packet = conn.publish_packet
        publish_pieces = conn.publish_pieces
        parts: list[bytes] = []  # the batch's packets, or pieces of them, to join once
        count = 0
        awaits_ack = []
        for entry in entries:
            message = entry.message
            if message.expires_at is not None and message.expired():
                awaits_ack.append(False)
                continue
            if granted == 0 or not message.persistent:
                data = publish_packet(message, 0, None, False)
                if data is not None:
                    parts.append(data)
                    count += 1
                awaits_ack.append(False)
                continue
            qos = 1 if granted == 1 else message_qos(message)
            packet_id = self._allocate_id()
            pieces = publish_pieces(message, packet_id) if qos == 1 else None
            if pieces is not None:
                parts += pieces
            else:
                data = publish_packet(message, qos, packet_id, False)
                if data is None:  # too big for the client: dropped as if delivered
                    awaits_ack.append(False)
                    continue
                parts.append(data)
            inflight[packet_id] = Inflight(queue, entry.seq, message, qos, False, None)
            count += 1
            awaits_ack.append(True)
        if count:
            conn.send_publishes(b"".join(parts), count)
        return awaits_ack

    def deliver(self, queue: Queue, message: Message, seq: int, redelivered: bool) -> bool:
        if message.expires_at is not None and message.expired():
            return False
        granted = self._only_qos
        retain = False
        ids = None
        if queue is not self.queue:
            granted, ids = self._shared_grant(queue)
        elif granted is None:
            granted, retain, ids = self._granted_qos(message)
            if granted < 0:
                return False
        conn = self.connection
        if self.filtered and not conn.may_receive(message_topic(message)):
            return False
        if granted == 0 or not message.persistent:
            if conn.level < 5:
                cache = message.cache
                data = cache.get(V3_LIVE) if cache is not None and not retain else None
                conn.send_publish(data or encode_qos0(message, retain))
            else:
                # a stream's encoding for this client may be in the message's cache already
                # (the publisher's own packet, or another subscriber's): skip the checks
                cache = message.cache
                data = None
                if cache is not None and not retain and ids is None:
                    data = cache.get(conn.live_key)
                    if data is not None and (
                        message.expires_at is not None or len(data) > conn.max_packet_out
                    ):
                        data = None
                if data is None:
                    data = conn.publish_packet(message, 0, None, retain, False, ids)
                if data is not None:
                    conn.send_publish(data)
            return False
        qos = 1 if granted == 1 else message_qos(message)
        packet_id = self._allocate_id()
        data = conn.publish_packet(message, qos, packet_id, retain, False, ids)
        if data is None:
            return False  # too big for the client: dropped as if delivered
        self.inflight[packet_id] = Inflight(queue, seq, message, qos, retain, ids)
        conn.send_publish(data)
        return True

    def deliver_settled(self, queue: Queue, messages: list[Message]) -> int:
        """A run of messages as QoS 0 in one go, when nothing about them needs a look one
        by one: one subscription QoS on the session's own queue, no options, no ACL
        filtering, no expiry.  The run shares its encoding's parts (and a fan-out its
        packets).  How many it took from the front: all or none."""
        conn = self.connection
        granted = self._only_qos
        first = messages[0]
        if (
            queue is not self.queue
            or granted is None
            or (granted and first.persistent)
            or first.expires_at is not None
            or conn is None
            or self.filtered
            or len(conn.outbox) > OUTPUT_HIGH_WATER
        ):
            return 0
        if conn.level < 5:
            # every 3.x subscriber gets the same bytes: a fan-out joins the run once
            cache = first.cache
            if cache is None:
                cache = first.cache = {}
            key = (V3_LIVE, len(messages))
            joined = cache.get(key)
            if joined is None:
                packets = []
                for message in messages:
                    held = message.cache
                    packet = held.get(V3_LIVE) if held is not None else None
                    packets.append(packet or encode_qos0(message, False))
                joined = cache[key] = b"".join(packets)
            conn.send_publishes(joined, len(messages))
            return len(messages)
        joined = conn.publish_run(messages)
        if joined is not None:
            conn.send_publishes(joined, len(messages))
            return len(messages)
        for message in messages:  # some are too big for the client: those are dropped
            packet = conn.publish_packet(message, 0, None, False)
            if packet is not None:
                conn.send_publish(packet)
        return len(messages)

    def queue_deleted(self, queue: Queue) -> None:
        if queue is not self.queue:
            for topic_filter, group_queue in list(self._shared_queues.items()):
                if group_queue is queue:
                    del self._shared_queues[topic_filter]
                    self.shared.pop(topic_filter, None)
                    self.options.pop(topic_filter, None)
            return
        for packet_id, item in list(self.inflight.items()):
            if type(item) is Entry:  # awaiting the client's ack, which no queue takes now
                self.inflight[packet_id] = Inflight(None, None, item.message, 1, False, None)
        self.subscriptions.clear()
        self.options = {f: o for f, o in self.options.items() if f in self.shared}
        self._only_qos = None
        self.queue = None

    # -- sending ------------------------------------------------------------------------

    def send_retained(self, message: Message, granted: int, ids: list[int] | None) -> None:
        """A retained message for a new subscription: sent with retain=1, outside the
        queue (it is not the queue's to ack)."""
        conn = self.connection
        assert conn is not None
        qos = min(granted, message_qos(message))
        packet_id = self._allocate_id() if qos else None
        data = conn.publish_packet(message, qos, packet_id, True, False, ids)
        if data is None:
            return
        if qos:
            self.inflight[packet_id] = Inflight(None, None, message, qos, True, ids)
        conn.send_publish(data)

    def resend_inflight(self, conn: MQTTConnection) -> None:
        """On session resumption: every unacknowledged PUBLISH again with DUP=1 and its
        original packet id, and PUBREL for those already PUBRECed (MQTT 4.4)."""
        for packet_id, item in list(self.inflight.items()):
            if type(item) is Entry:
                item = self.inflight[packet_id] = self._record(item)
            if item.state == AWAIT_ACK:
                data = conn.publish_packet(
                    item.message, item.qos, packet_id, item.retain, True, item.subscription_ids
                )
                if data is None:  # the new connection allows smaller packets only
                    del self.inflight[packet_id]
                    self._ack_queue(item)
                    continue
                conn.send_publish(data)
            else:
                conn.write(bytes((0x62, 2)) + packet_id.to_bytes(2, "big"))

    def _record(self, entry: Entry) -> Inflight:
        """The inflight record of a batch delivery, which holds only its queue entry."""
        return Inflight(self.queue, entry.seq, entry.message, 1, False, None)

    def _allocate_id(self) -> int:
        packet_id = self._next_id
        while packet_id in self.inflight:
            packet_id = packet_id % 65535 + 1
        self._next_id = packet_id % 65535 + 1
        return packet_id

    def _granted_qos(self, message: Message) -> tuple[int, bool, list[int] | None]:
        """The highest QoS among this session's subscriptions matching the message (MQTT
        3.1.1 3.3.5: overlapping subscriptions deliver one copy at the highest QoS; -1
        when none matches any more), whether it goes out with the retain flag it was
        published with (MQTT 5 retain-as-published), and the identifiers of every matching
        subscription.  No-local subscriptions skip the session's own messages."""
        topic = message_topic(message)
        options = self.options
        own = bool(options) and getattr(message.origin, "session", None) is self
        best = -1
        retain = False
        ids = None
        for topic_filter, qos in self.subscriptions.items():
            if not filter_matches(topic_filter, topic):
                continue
            option = options.get(topic_filter) if options else None
            if option is not None:
                if option.no_local and own:
                    continue
                if option.retain_as_published and message.extra is not None:
                    retain = retain or message.extra.get("retain", False)
                if option.subscription_id:
                    ids = (
                        [option.subscription_id] if ids is None else [*ids, option.subscription_id]
                    )
            best = max(best, qos)
        return best, retain, ids

    def _shared_grant(self, queue: Queue) -> tuple[int, list[int] | None]:
        """QoS and subscription identifier of the shared subscription ``queue`` serves."""
        for topic_filter, group_queue in self._shared_queues.items():
            if group_queue is queue:
                option = self.options.get(topic_filter)
                ids = [option.subscription_id] if option and option.subscription_id else None
                return self.shared[topic_filter], ids
        return 0, None

    # -- acknowledgements from the client -----------------------------------------------

    def acked(self, packet_ids: Iterable[int]) -> None:
        """PUBACKs from the client: the QoS 1 deliveries they name are done."""
        inflight = self.inflight
        seqs = []  # of batch deliveries from the session's own queue, acked together
        for packet_id in packet_ids:
            item = inflight.get(packet_id)
            if type(item) is Entry:
                del inflight[packet_id]
                seqs.append(item.seq)
            elif item is not None and item.qos == 1:
                del inflight[packet_id]
                if item.queue is not None:
                    item.queue.ack(item.seq)
        if seqs:
            self.queue.ack_all(seqs)

    def pubrec(self, packet_id: int) -> bool:
        """QoS 2 step 1; returns whether the packet id is known (PUBREL follows anyway)."""
        item = self.inflight.get(packet_id)
        if type(item) is not Inflight or item.qos != 2:
            return False
        if item.state == AWAIT_ACK:
            item.state = AWAIT_COMP
            self._ack_queue(item)
            self.save()
        return True

    def pubcomp(self, packet_id: int) -> None:
        item = self.inflight.get(packet_id)
        if type(item) is Inflight and item.state == AWAIT_COMP:
            del self.inflight[packet_id]
            self.save()

    def _ack_queue(self, item: Inflight) -> None:
        if item.queue is not None:
            item.queue.ack(item.seq)
            item.queue = None

    # -- subscriptions ------------------------------------------------------------------

    def subscribe(
        self,
        topic_filter: str,
        qos: int,
        filtered: bool = False,
        no_local: bool = False,
        retain_as_published: bool = False,
        subscription_id: int = 0,
    ) -> None:
        if no_local or retain_as_published or subscription_id:
            self.options[topic_filter] = Options(no_local, retain_as_published, subscription_id)
        else:
            self.options.pop(topic_filter, None)
        if filtered:
            self.filtered[topic_filter] = None
        else:
            self.filtered.pop(topic_filter, None)
        if shared.is_shared(topic_filter):
            self.shared[topic_filter] = qos
            self._join(topic_filter)
            self.save()
            return
        if topic_filter not in self.subscriptions:
            self.vhost.bind(
                self._open_queue(), TOPIC_EXCHANGE, filter_to_pattern(topic_filter), None
            )
        self.subscriptions[topic_filter] = qos
        self._subscriptions_changed()

    def unsubscribe(self, topic_filter: str) -> bool:
        if shared.is_shared(topic_filter):
            if self.shared.pop(topic_filter, None) is None:
                return False
            self.options.pop(topic_filter, None)
            self.filtered.pop(topic_filter, None)
            self._leave(topic_filter)
            self.save()
            return True
        if self.subscriptions.pop(topic_filter, None) is None:
            return False
        self.filtered.pop(topic_filter, None)
        self.options.pop(topic_filter, None)
        self.vhost.unbind(self.queue, TOPIC_EXCHANGE, filter_to_pattern(topic_filter), None)
        self._subscriptions_changed()
        return True

    def _join(self, topic_filter: str) -> None:
        """Become a consumer of the group queue of a shared subscription."""
        if topic_filter in self._shared_queues:
            return
        name = shared.queue_name(topic_filter)
        queue = self.vhost.queues.get(name)
        if queue is None:
            queue = self.vhost.declare_queue(
                name,
                durable=self.durable,
                arguments={"x-max-length": self._max_queued} if self._max_queued else None,
            )
            _group, inner = shared.split(topic_filter)
            self.vhost.bind(queue, TOPIC_EXCHANGE, filter_to_pattern(inner), None)
        self._shared_queues[topic_filter] = queue
        queue.add_consumer(self)

    def _leave(self, topic_filter: str) -> None:
        """Stop consuming a group queue: this member's unacknowledged messages go to the
        others; the last member to leave deletes it."""
        queue = self._shared_queues.pop(topic_filter, None)
        if queue is None:
            return
        self._drop_inflight(queue)
        queue.remove_consumer(self)
        if not queue.consumers and self.vhost.queues.get(queue.name) is queue:
            self.vhost.delete_queue(queue.name)

    def _drop_inflight(self, queue: Queue) -> None:
        """Forget the messages from ``queue`` still awaiting the client's ack (the queue
        gives them to another consumer)."""
        for packet_id, item in list(self.inflight.items()):
            if type(item) is Inflight and item.queue is queue:
                del self.inflight[packet_id]

    def _subscriptions_changed(self) -> None:
        self._update_fast_path()
        self.save()

    def _update_fast_path(self) -> None:
        """With one plain subscription, every delivery gets its QoS without matching."""
        subs = self.subscriptions
        single = len(subs) == 1 and not self.options
        self._only_qos = next(iter(subs.values())) if single else None

    # -- lifecycle ----------------------------------------------------------------------

    def attach(self, conn: MQTTConnection) -> None:
        self.connection = conn

    def detach(self, conn: MQTTConnection) -> None:
        """The connection went away; a persistent session keeps its inflight messages for
        resending, a clean one is destroyed by its owner."""
        if self.connection is conn:
            self.connection = None
            for queue in self._shared_queues.values():
                self._drop_inflight(queue)
                queue.return_unacked(self)

    def destroy(self) -> None:
        """Drop the session and its queue (clean session end, clean-start takeover or
        expiry)."""
        self.connection = None
        self.pending_will = None
        for topic_filter in list(self._shared_queues):
            self._leave(topic_filter)
        self.inflight.clear()
        queue = self.queue
        if queue is not None and self.vhost.queues.get(queue.name) is queue:
            self.vhost.delete_queue(queue.name)
        if self._stored:
            self._stored = False
            self._persist(None)

    def set_expiry(self, interval: int | None) -> None:
        """The expiry interval a new CONNECT or a DISCONNECT gave (MQTT 5 3.1.2.11)."""
        self.expiry_interval = interval
        self.durable = interval != 0
        self.save()

    def record(self) -> bytes:
        return msgpack.packb(
            {
                "subscriptions": self.subscriptions,
                "shared": self.shared,
                "options": {f: o.record() for f, o in self.options.items()},
                "incoming_qos2": sorted(self.incoming_qos2),
                "expiry_interval": self.expiry_interval,
                "ends_at": self.ends_at,
            }
        )

    def restore(self, blob: bytes) -> None:
        data = msgpack.unpackb(blob)
        self.subscriptions = dict(data.get("subscriptions", {}))
        self.options = {f: Options(*o) for f, o in data.get("options", {}).items()}
        self.shared = dict(data.get("shared", {}))
        for topic_filter in self.shared:
            self._join(topic_filter)
        self.incoming_qos2 = dict.fromkeys(data.get("incoming_qos2", ()))
        self.expiry_interval = data.get("expiry_interval")
        self.ends_at = data.get("ends_at")
        self._stored = True
        self._update_fast_path()

    def save(self) -> None:
        """Persist this session's record, if it is a persistent session."""
        if self.durable:
            self._stored = True
            self._persist(self.record())


def queue_name(client_id: str) -> str:
    return f"mqtt.session.{client_id}"
