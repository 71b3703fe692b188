"""The core's view of a native WebSocket connection: queue consumers (``consume``) and the
connection's subscription queue (``subscribe``), both ordinary ``broker.queues.Consumer``s.

Both take deliveries only while the connection's outbox has room, so a slow client leaves
messages in the queues, where their limits apply: a consumer's queue as declared, the
subscription queue at ``MAX_QUEUED`` messages dropping the oldest (as MQTT sessions do).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.message import Message
    from broker.queues import Queue
    from protocols.websocket.native import NativeConnection

#: Messages a subscription queue holds for a client that reads slowly; beyond, the oldest
#: go (as ``mqtt.max_queued`` bounds an MQTT session).
MAX_QUEUED = 1000


class QueueConsumer:
    """One ``consume``: deliveries await ``ack``/``nack`` under connection-wide tags, at
    most ``prefetch`` at a time (0: as many as the outbox takes)."""

    __slots__ = ("conn", "queue", "prefetch", "unacked")

    def __init__(self, conn: NativeConnection, queue: Queue, prefetch: int) -> None:
        self.conn = conn
        self.queue = queue
        self.prefetch = prefetch
        self.unacked = 0

    def ready(self) -> bool:
        return self.conn.has_room() and (not self.prefetch or self.unacked < self.prefetch)

    def deliver(self, queue: Queue, message: Message, seq: int, redelivered: bool) -> bool:
        self.unacked += 1
        self.conn.deliver_from_queue(self, message, seq, redelivered)
        return True

    def queue_deleted(self, queue: Queue) -> None:
        self.conn.consumer_gone(self)


class SubscriptionConsumer:
    """Consumes the connection's subscription queue: deliveries are settled as they are
    handed to the outbox (a subscription has no acks)."""

    __slots__ = ("conn",)

    def __init__(self, conn: NativeConnection) -> None:
        self.conn = conn

    def ready(self) -> bool:
        return self.conn.has_room()

    def deliver(self, queue: Queue, message: Message, seq: int, redelivered: bool) -> bool:
        self.conn.deliver_subscribed([message])
        return False

    def deliver_settled(self, queue: Queue, messages: list[Message]) -> int:
        if not self.ready():
            return 0
        self.conn.deliver_subscribed(messages)
        return len(messages)

    def queue_deleted(self, queue: Queue) -> None:
        self.conn.subscriptions_gone()
