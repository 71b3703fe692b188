"""The core's view of an AMQP consumer (basic.consume) and of basic.get's deliveries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocols.amqp.codec import deliver_head

#: Routes whose basic.deliver framing a consumer keeps (most consume one or a few).
DELIVER_HEADS = 256

if TYPE_CHECKING:
    from broker.message import Message
    from broker.queues import Queue
    from protocols.amqp.channel import Channel


class AMQPConsumer:
    """One basic.consume: the queue asks ``ready`` before each delivery, so prefetch
    (per consumer and per channel), channel.flow and the connection's output buffer all
    hold deliveries back here."""

    __slots__ = (
        "channel",
        "tag",
        "queue",
        "no_ack",
        "exclusive",
        "prefetch",
        "priority",
        "unacked",
        "deliver_heads",
        "last_route",
    )

    def __init__(
        self,
        channel: Channel,
        tag: str,
        queue: Queue,
        *,
        no_ack: bool,
        exclusive: bool,
        prefetch: int,
        priority: int,
    ) -> None:
        self.channel = channel
        self.tag = tag
        self.queue = queue
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.prefetch = prefetch
        self.priority = priority
        self.unacked = 0
        #: (exchange, routing key) -> basic.deliver's bytes before and after the delivery
        #: tag and redelivered flag
        self.deliver_heads: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        #: (routing key, exchange, head) of the last delivery: a stream repeats the very
        #: same string objects, so an identity check finds its head without a lookup
        self.last_route: tuple = (None, None, None)

    def deliver_head(self, exchange: str, routing_key: str) -> tuple[bytes, bytes]:
        if len(self.deliver_heads) >= DELIVER_HEADS:
            self.deliver_heads.clear()
        head = self.deliver_heads[exchange, routing_key] = deliver_head(
            self.channel.number, self.tag, exchange, routing_key
        )
        return head

    def head_of(self, message: Message) -> tuple[bytes, bytes]:
        """basic.deliver's framing for the message's exchange and routing key."""
        last = self.last_route
        if last[0] is message.routing_key and last[1] is message.exchange:
            return last[2]
        head = self.deliver_heads.get((message.exchange, message.routing_key))
        if head is None:
            head = self.deliver_head(message.exchange, message.routing_key)
        self.last_route = (message.routing_key, message.exchange, head)
        return head

    def ready(self) -> bool:
        channel = self.channel
        if not channel.deliverable():
            return False
        if self.no_ack:
            return True
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        return not channel.global_prefetch or channel.unacked_count < channel.global_prefetch

    def deliver(self, queue: Queue, message: Message, seq: int, redelivered: bool) -> bool:
        return self.channel.deliver(self, queue, message, seq, redelivered)

    def deliver_settled(self, queue: Queue, messages: list[Message]) -> int:
        """A run of one publisher's messages at once, for a no-ack consumer (acked
        deliveries each need their own record): all of them or none."""
        if not self.no_ack:
            return 0
        return self.channel.deliver_settled(self, messages)

    def queue_deleted(self, queue: Queue) -> None:
        self.channel.cancelled_by_server(self)


class Getter:
    """Stands for a channel's basic.get deliveries awaiting ack (never in a queue's
    consumer list, so the queue never dispatches to it)."""

    __slots__ = ("channel",)

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def ready(self) -> bool:
        return False

    def deliver(self, queue: Queue, message: Message, seq: int, redelivered: bool) -> bool:
        raise AssertionError("basic.get is never dispatched to")

    def queue_deleted(self, queue: Queue) -> None:
        return None
