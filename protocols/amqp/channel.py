"""One AMQP channel: its methods on the core (exchanges, queues, bindings, consumers,
publishing), content assembly, delivery tags, prefetch, publisher confirms and
transactions.  Sans-I/O: output goes through the connection's ``write``."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pamqp import commands

from broker.errors import BrokerError
from broker.exchanges import EXCHANGE_TYPES
from broker.message import Message, Properties
from broker.topics import key_to_mqtt
from broker.vhost import PublishResult
from protocols.amqp import codec
from protocols.amqp.codec import (
    ACCESS_REFUSED,
    NOT_ALLOWED,
    NOT_FOUND,
    PRECONDITION_FAILED,
    UNEXPECTED_FRAME,
    AMQPError,
    ChannelError,
    ContentHeader,
)
from protocols.amqp.consumer import AMQPConsumer, Getter
from protocols.amqp.mapping import keep_block, properties_block_of, properties_from_block

if TYPE_CHECKING:
    from broker.queues import Queue
    from protocols.amqp.connection import AMQPConnection

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
#: Distinct (property block, body size) framings a channel keeps for deliveries.
FRAMING_CACHE_SIZE = 256
#: Largest message body accepted (RabbitMQ's default max_message_size).
MAX_MESSAGE_SIZE = 128 * 1024 * 1024


def _generated(prefix: str) -> str:
    return prefix + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


class Delivery:
    """A delivery awaiting the client's ack."""

    __slots__ = ("queue", "seq", "consumer")

    def __init__(self, queue: Queue, seq: int, consumer: AMQPConsumer | Getter) -> None:
        self.queue = queue
        self.seq = seq
        self.consumer = consumer


class PendingPublish:
    """basic.publish whose content is still arriving."""

    __slots__ = ("method", "body_size", "properties", "block", "parts", "received")

    def __init__(self, method: codec.Publish) -> None:
        self.method = method
        self.body_size = -1  # until the content header
        self.properties: Properties | None = None
        self.block = b""
        self.parts: list[bytes] = []
        self.received = 0


class Channel:
    def __init__(self, conn: AMQPConnection, number: int) -> None:
        self.conn = conn
        self.number = number
        self.closing = False  # the server sent channel.close and awaits close-ok
        self.flow_active = True
        self.consumers: dict[str, AMQPConsumer] = {}
        self.unacked: dict[int, Delivery] = {}
        self.unacked_count = 0
        self.next_tag = 1
        self.prefetch = 0  # for consumers started from now on (basic.qos global=false)
        self.global_prefetch = 0  # shared by the channel's consumers (global=true)
        self.getter = Getter(self)
        self.last_queue = ""
        self.content: PendingPublish | None = None
        self.confirming = False
        self.publish_seq = 0
        self.confirms: list[tuple[int, bool]] = []
        self.transactional = False
        self.tx_publishes: list[tuple[Message, bool]] = []
        self.tx_acks: list[Callable[[], None]] = []
        self.reply_queue: Queue | None = None
        #: (property block, body size) -> content framing before the body (see deliver)
        self._framing: dict[tuple[bytes, int], bytes] = {}
        self._handlers: dict[int, Callable[[Any], None]] = {
            commands.Channel.Flow.index: self._flow,
            commands.Exchange.Declare.index: self._exchange_declare,
            commands.Exchange.Delete.index: self._exchange_delete,
            commands.Exchange.Bind.index: self._exchange_bind,
            commands.Exchange.Unbind.index: self._exchange_unbind,
            commands.Queue.Declare.index: self._queue_declare,
            commands.Queue.Bind.index: self._queue_bind,
            commands.Queue.Unbind.index: self._queue_unbind,
            commands.Queue.Purge.index: self._queue_purge,
            commands.Queue.Delete.index: self._queue_delete,
            commands.Basic.Qos.index: self._qos,
            commands.Basic.Consume.index: self._consume,
            commands.Basic.Cancel.index: self._cancel,
            commands.Basic.Get.index: self._get,
            commands.Basic.Ack.index: self._ack_method,
            commands.Basic.Nack.index: self._nack,
            commands.Basic.Reject.index: self._reject,
            commands.Basic.Recover.index: self._recover,
            commands.Basic.RecoverAsync.index: self._recover,
            commands.Confirm.Select.index: self._confirm_select,
            commands.Tx.Select.index: self._tx_select,
            commands.Tx.Commit.index: self._tx_commit,
            commands.Tx.Rollback.index: self._tx_rollback,
        }

    # -- frames -------------------------------------------------------------------------

    def method(self, method: Any) -> None:
        if self.content is not None:
            raise AMQPError(UNEXPECTED_FRAME, f"{_name(method)} while content was expected")
        kind = type(method)
        if kind is codec.WholePublish or kind is codec.Publish:
            if method.immediate:
                raise AMQPError(codec.NOT_IMPLEMENTED, "immediate=true", method.index)
            if kind is codec.Publish:
                self.content = PendingPublish(method)  # its content frames follow
                return
            block = method.properties
            self._publish(method, properties_from_block(block), block, method.body)
            return
        if type(method) is codec.Ack:
            self._ack(method.delivery_tag, method.multiple, method.index)
            return
        handler = self._handlers.get(method.index)
        if handler is None:
            raise AMQPError(
                codec.COMMAND_INVALID, f"{_name(method)} is not a client method", method.index
            )
        try:
            handler(method)
        except BrokerError as exc:
            raise ChannelError(exc.code, exc.message, method.index) from None

    def header(self, header: ContentHeader) -> None:
        content = self.content
        if content is None or content.body_size >= 0:
            raise AMQPError(UNEXPECTED_FRAME, "content header without basic.publish")
        if header.body_size > MAX_MESSAGE_SIZE:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"message size {header.body_size} is larger than max size {MAX_MESSAGE_SIZE}",
                content.method.index,
            )
        content.body_size = header.body_size
        content.properties = properties_from_block(header.properties)
        content.block = header.properties
        if not header.body_size:
            self.content = None
            self._publish(content.method, content.properties, content.block, b"")

    def body(self, payload: bytes) -> None:
        content = self.content
        if content is None or content.body_size < 0:
            raise AMQPError(UNEXPECTED_FRAME, "content body without a content header")
        content.received += len(payload)
        if content.received > content.body_size:
            raise AMQPError(codec.FRAME_ERROR, "content body longer than its header said")
        if content.received == content.body_size:
            self.content = None
            body = b"".join((*content.parts, payload)) if content.parts else payload
            assert content.properties is not None
            self._publish(content.method, content.properties, content.block, body)
        else:
            content.parts.append(payload)

    # -- publishing ---------------------------------------------------------------------

    def _check_publish(self, method: codec.Publish | codec.WholePublish, props: Properties) -> None:
        """What a publish must pass: the exchange exists and is not internal, the user may
        write to it (and, on amq.topic, to the topic), user_id is the user's own."""
        conn = self.conn
        vhost = conn.vhost
        exchange_name = method.exchange
        index = method.index
        exchange = vhost.exchanges.get(exchange_name)
        if exchange is None:
            raise ChannelError(
                NOT_FOUND, f"no exchange '{exchange_name}' in vhost '{vhost.name}'", index
            )
        if exchange.internal:
            raise ChannelError(
                ACCESS_REFUSED, f"cannot publish to internal exchange '{exchange_name}'", index
            )
        conn.check("write", exchange_name, index)
        routing_key = method.routing_key
        if exchange_name == "amq.topic" and not conn.topic_allowed(routing_key):
            raise ChannelError(
                ACCESS_REFUSED, f"publish to topic '{key_to_mqtt(routing_key)}' refused", index
            )
        if props.user_id is not None and props.user_id != conn.username:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"user_id property set to '{props.user_id}' but authenticated user was "
                f"'{conn.username}'",
                index,
            )

    def _publish(
        self,
        method: codec.Publish | codec.WholePublish,
        props: Properties,
        block: bytes,
        body: bytes,
    ) -> None:
        conn = self.conn
        index = method.index
        if self.confirming:
            self.publish_seq += 1
        self._check_publish(method, props)
        if props.reply_to == DIRECT_REPLY_TO:
            if self.reply_queue is None:
                raise ChannelError(PRECONDITION_FAILED, "fast reply consumer does not exist", index)
            props = props.copy()
            props.reply_to = self.reply_queue.name
            block = b""
        expires_at = None
        if props.expiration is not None:
            expires_at = time.time() + _expiration_ms(props.expiration, index) / 1000
        message = Message(
            method.exchange, method.routing_key, body, props, expires_at, conn, conn.username
        )
        if block:
            keep_block(message, block)
        if self.transactional:
            self.tx_publishes.append((message, method.mandatory))
            return
        self._route(message, method.mandatory)

    def publish_run(self, run: list[codec.WholePublish]) -> None:
        """Consecutive whole publishes with the same exchange, routing key, flags and
        property block (one publisher's stream): checked once, routed once
        (``VHost.publish_many``), their confirms folded."""
        if self.content is not None:
            raise AMQPError(UNEXPECTED_FRAME, "basic.publish while content was expected")
        first = run[0]
        block = first.properties
        props = properties_from_block(block)
        if self.transactional or first.immediate or props.reply_to == DIRECT_REPLY_TO:
            for publish in run:
                self.method(publish)
            return
        self._check_publish(first, props)
        expires_at = None
        if props.expiration is not None:
            expires_at = time.time() + _expiration_ms(props.expiration, first.index) / 1000
        conn = self.conn
        exchange, routing_key, user = first.exchange, first.routing_key, conn.username
        messages = []
        for publish in run:
            message = Message(exchange, routing_key, publish.body, props, expires_at, conn, user)
            keep_block(message, block)
            messages.append(message)
        conn.counts.messages_in += len(messages)
        try:
            result = conn.vhost.publish_many(messages)
        except BrokerError:
            result = PublishResult()  # the exchange went away meanwhile: unroutable
        if first.mandatory and not result.routed:
            for message in messages:
                self._return(message, codec.NO_ROUTE, "NO_ROUTE")
        if result.stored:
            conn.sync_needed = True
        if self.confirming:
            refused = result.refused
            if refused is None:  # acks fold into one for the last
                self.publish_seq += len(run)
                self.confirms.append((self.publish_seq, True))
            else:
                for index in range(len(run)):
                    self.publish_seq += 1
                    self.confirms.append((self.publish_seq, index not in refused))

    def _route(self, message: Message, mandatory: bool) -> None:
        conn = self.conn
        conn.counts.messages_in += 1
        try:
            result = conn.vhost.publish(message)
        except BrokerError:
            result = PublishResult()  # the exchange went away meanwhile: unroutable
        if mandatory and not result.routed and not result.rejected:
            self._return(message, codec.NO_ROUTE, "NO_ROUTE")
        if result.stored:
            conn.sync_needed = True
        if self.confirming:
            self.confirms.append((self.publish_seq, not result.rejected))

    def _return(self, message: Message, code: int, text: str) -> None:
        method = commands.Basic.Return(code, text, message.exchange, message.routing_key)
        self._write_with_content(method, message)

    def _write_with_content(self, method: Any, message: Message) -> None:
        """A content-carrying method (basic.return, basic.get-ok) with the message."""
        content = codec.content_bytes(
            self.number, properties_block_of(message), message.body, self.conn.frame_max
        )
        self.conn.write_parts([codec.method_frame(self.number, method), content])

    def confirm_frames(self) -> list[bytes]:
        """basic.ack/nack for the publishes confirmed since the last call, runs of acks
        folded into one ``multiple``."""
        confirms, self.confirms = self.confirms, []
        out: list[bytes] = []
        run_end = 0
        for seq, ok in confirms:
            if ok:
                run_end = seq
                continue
            if run_end:
                out.append(self._confirm(run_end, True))
                run_end = 0
            out.append(codec.method_frame(self.number, commands.Basic.Nack(seq, False, False)))
        if run_end:
            out.append(self._confirm(run_end, True))
        return out

    def _confirm(self, seq: int, multiple: bool) -> bytes:
        return codec.method_frame(self.number, commands.Basic.Ack(seq, multiple))

    # -- deliveries ---------------------------------------------------------------------

    def deliverable(self) -> bool:
        return self.flow_active and not self.closing and self.conn.writable()

    def deliver(
        self,
        consumer: AMQPConsumer,
        queue: Queue,
        message: Message,
        seq: int,
        redelivered: bool,
    ) -> bool:
        """basic.deliver and the content: the method's bytes around the delivery tag come
        from the consumer's cache (per exchange and routing key), the content frames from
        the message's (shared by every consumer on a channel of this number)."""
        tag = self.next_tag
        self.next_tag = tag + 1
        conn = self.conn
        conn.counts.messages_out += 1
        head = consumer.head_of(message)
        body = message.body
        outbox = conn.outbox
        wake = not outbox
        outbox += head[0]
        outbox += (tag << 8 | redelivered).to_bytes(9, "big")
        outbox += head[1]
        if 0 < len(body) <= conn.frame_max - codec.FRAME_OVERHEAD:
            # one body frame: its framing comes from a cache per (property block, size)
            block = properties_block_of(message)
            framing = self._framing.get((block, len(body)))
            if framing is None:
                framing = self._content_framing(block, len(body))
            outbox += framing
            outbox += body
            outbox += b"\xce"
        else:
            outbox += codec.content_bytes(
                self.number, properties_block_of(message), body, conn.frame_max
            )
        if wake:
            conn.on_output()
        if consumer.no_ack:
            return False
        consumer.unacked += 1
        self.unacked_count += 1
        self.unacked[tag] = Delivery(queue, seq, consumer)
        return True

    def deliver_settled(self, consumer: AMQPConsumer, messages: list[Message]) -> int:
        """A run of one publisher's messages to a no-ack consumer in one write: they share
        exchange, routing key and properties (``VHost.publish_many``), so one basic.deliver
        head and one property block serve the run, and only the delivery tags differ.
        All or none: none while a delivery would be held back (channel.flow, closing,
        output over its high water) or when the run alone is more than the output holds;
        the queue then delivers them one by one, each checked."""
        if not self.flow_active or self.closing:
            return 0
        conn = self.conn
        bodies = [message.body for message in messages]
        if not conn.takes_at_once(sum(map(len, bodies))):
            return 0
        first = messages[0]
        block = properties_block_of(first)
        tag = self.next_tag
        count = len(messages)
        self.next_tag = tag + count
        conn.counts.messages_out += count
        size = len(first.body)
        framing = None
        if 0 < size <= conn.frame_max - codec.FRAME_OVERHEAD:
            framing = self._framing.get((block, size)) or self._content_framing(block, size)
        data = codec.deliver_run(
            self.number, consumer.head_of(first), tag, block, bodies, conn.frame_max, framing
        )
        conn.write(data)
        return count

    def _content_framing(self, block: bytes, size: int) -> bytes:
        """The content header frame and the body frame's head for a one-frame body."""
        if len(self._framing) >= FRAMING_CACHE_SIZE:
            self._framing.clear()
        framing = self._framing[block, size] = codec.content_framing(self.number, block, size)
        return framing

    def cancelled_by_server(self, consumer: AMQPConsumer) -> None:
        """The consumer's queue was deleted: tell a client that understands it."""
        if self.consumers.pop(consumer.tag, None) is None:
            return
        if self.conn.capability("consumer_cancel_notify"):
            cancel = commands.Basic.Cancel(consumer.tag, nowait=True)
            self.conn.write(codec.method_frame(self.number, cancel))

    # -- exchanges ----------------------------------------------------------------------

    def _exchange_declare(self, m: commands.Exchange.Declare) -> None:
        conn = self.conn
        if not m.passive and m.exchange_type not in EXCHANGE_TYPES:
            raise AMQPError(
                codec.COMMAND_INVALID, f"unknown exchange type '{m.exchange_type}'", m.index
            )
        if not m.passive:
            conn.check("configure", m.exchange, m.index)
            alternate = (m.arguments or {}).get("alternate-exchange")
            if alternate is not None:
                conn.check("write", str(alternate), m.index)
        conn.vhost.declare_exchange(
            m.exchange,
            m.exchange_type,
            durable=m.durable,
            auto_delete=m.auto_delete,
            internal=m.internal,
            arguments=m.arguments or {},
            passive=m.passive,
        )
        self._reply(m.nowait, commands.Exchange.DeclareOk())

    def _exchange_delete(self, m: commands.Exchange.Delete) -> None:
        self.conn.check("configure", m.exchange, m.index)
        vhost = self.conn.vhost
        if m.exchange in vhost.exchanges:
            vhost.delete_exchange(m.exchange, if_unused=m.if_unused)
        self._reply(m.nowait, commands.Exchange.DeleteOk())

    def _exchange_bind(self, m: commands.Exchange.Bind) -> None:
        conn = self.conn
        conn.check("write", m.destination, m.index)
        conn.check("read", m.source, m.index)
        vhost = conn.vhost
        vhost.exchange(m.source)
        vhost.bind(vhost.exchange(m.destination), m.source, m.routing_key, m.arguments)
        self._reply(m.nowait, commands.Exchange.BindOk())

    def _exchange_unbind(self, m: commands.Exchange.Unbind) -> None:
        conn = self.conn
        conn.check("write", m.destination, m.index)
        conn.check("read", m.source, m.index)
        vhost = conn.vhost
        destination = vhost.exchanges.get(m.destination)
        if destination is not None and m.source in vhost.exchanges:
            vhost.unbind(destination, m.source, m.routing_key, m.arguments)
        self._reply(m.nowait, commands.Exchange.UnbindOk())

    # -- queues -------------------------------------------------------------------------

    def _queue_name(self, name: str, index: int) -> str:
        """An empty queue name means the channel's last declared queue (AMQP 0-9-1)."""
        if name:
            return name
        if not self.last_queue:
            raise ChannelError(NOT_FOUND, "no previously declared queue", index)
        return self.last_queue

    def _queue_declare(self, m: commands.Queue.Declare) -> None:
        conn = self.conn
        vhost = conn.vhost
        name = m.queue or (_generated("amq.gen-") if not m.passive else self.last_queue)
        if not m.passive:
            conn.check("configure", name, m.index)
        elif not name:
            raise ChannelError(NOT_FOUND, "no previously declared queue", m.index)
        queue = vhost.declare_queue(
            name,
            durable=m.durable,
            exclusive_owner=conn if m.exclusive else None,
            auto_delete=m.auto_delete,
            arguments=m.arguments or {},
            passive=m.passive,
            owner=conn,
            reserved=not m.queue,
        )
        self.last_queue = name
        ok = commands.Queue.DeclareOk(name, len(queue), len(queue.consumers))
        self._reply(m.nowait, ok)

    def _queue_bind(self, m: commands.Queue.Bind) -> None:
        conn = self.conn
        name = self._queue_name(m.queue, m.index)
        conn.check("write", name, m.index)
        conn.check("read", m.exchange, m.index)
        if m.exchange == "amq.topic" and not conn.topic_allowed(m.routing_key, "subscribe"):
            raise ChannelError(ACCESS_REFUSED, f"binding '{m.routing_key}' refused", m.index)
        queue = self._owned_queue(name, m.index)
        conn.vhost.bind(queue, m.exchange, m.routing_key or "", m.arguments)
        self._reply(m.nowait, commands.Queue.BindOk())

    def _queue_unbind(self, m: commands.Queue.Unbind) -> None:
        conn = self.conn
        name = self._queue_name(m.queue, m.index)
        conn.check("write", name, m.index)
        conn.check("read", m.exchange, m.index)
        queue = self._owned_queue(name, m.index)
        if m.exchange in conn.vhost.exchanges:
            conn.vhost.unbind(queue, m.exchange, m.routing_key or "", m.arguments)
        conn.write(codec.method_frame(self.number, commands.Queue.UnbindOk()))

    def _queue_purge(self, m: commands.Queue.Purge) -> None:
        name = self._queue_name(m.queue, m.index)
        self.conn.check("read", name, m.index)
        count = self._owned_queue(name, m.index).purge()
        self._reply(m.nowait, commands.Queue.PurgeOk(count))

    def _queue_delete(self, m: commands.Queue.Delete) -> None:
        conn = self.conn
        name = self._queue_name(m.queue, m.index)
        conn.check("configure", name, m.index)
        count = 0
        if name in conn.vhost.queues:
            self._owned_queue(name, m.index)
            count = conn.vhost.delete_queue(name, if_unused=m.if_unused, if_empty=m.if_empty)
        self._reply(m.nowait, commands.Queue.DeleteOk(count))

    def _owned_queue(self, name: str, index: int) -> Queue:
        """The queue, unless another connection holds it exclusively (405)."""
        queue = self.conn.vhost.queue(name)
        owner = queue.exclusive_owner
        if owner is not None and owner is not self.conn:
            raise ChannelError(
                codec.RESOURCE_LOCKED,
                f"cannot obtain exclusive access to locked queue '{name}' in vhost "
                f"'{self.conn.vhost.name}'",
                index,
            )
        return queue

    # -- consumers ----------------------------------------------------------------------

    def _qos(self, m: commands.Basic.Qos) -> None:
        if m.prefetch_size:
            raise ChannelError(codec.NOT_IMPLEMENTED, "prefetch_size is not supported", m.index)
        if m.global_:
            self.global_prefetch = m.prefetch_count
        else:
            self.prefetch = m.prefetch_count
        self.conn.write(codec.method_frame(self.number, commands.Basic.QosOk()))
        self._dispatch_all()

    def _consume(self, m: commands.Basic.Consume) -> None:
        conn = self.conn
        tag = m.consumer_tag or _generated("amq.ctag-")
        if tag in self.consumers:
            raise AMQPError(NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'", m.index)
        if m.queue == DIRECT_REPLY_TO:
            queue = self._reply_to_queue(m)
        else:
            name = self._queue_name(m.queue, m.index)
            conn.check("read", name, m.index)
            queue = self._owned_queue(name, m.index)
        existing = queue.consumers
        if m.exclusive and existing:
            raise ChannelError(
                ACCESS_REFUSED, f"queue '{queue.name}' in vhost '{conn.vhost.name}' in use", m.index
            )
        if any(getattr(c, "exclusive", False) for c in existing):
            raise ChannelError(
                ACCESS_REFUSED,
                f"queue '{queue.name}' in vhost '{conn.vhost.name}' in exclusive use",
                m.index,
            )
        priority = (m.arguments or {}).get("x-priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise ChannelError(PRECONDITION_FAILED, "x-priority must be an integer", m.index)
        consumer = AMQPConsumer(
            self,
            tag,
            queue,
            no_ack=m.no_ack,
            exclusive=m.exclusive,
            prefetch=self.prefetch,
            priority=priority,
        )
        self.consumers[tag] = consumer
        if not m.nowait:
            conn.write(codec.method_frame(self.number, commands.Basic.ConsumeOk(tag)))
        queue.add_consumer(consumer)

    def _reply_to_queue(self, m: commands.Basic.Consume) -> Queue:
        """Direct reply-to: a consumer on pseudo-queue ``amq.rabbitmq.reply-to`` gets a
        private queue whose name is the ``reply_to`` its requests carry."""
        if not m.no_ack:
            raise ChannelError(PRECONDITION_FAILED, "reply consumer cannot acknowledge", m.index)
        if self.reply_queue is not None:
            raise ChannelError(PRECONDITION_FAILED, "reply consumer already set", m.index)
        queue = self.conn.vhost.declare_queue(
            _generated(DIRECT_REPLY_TO + "."),
            durable=False,
            exclusive_owner=self.conn,
            auto_delete=True,
            reserved=True,
        )
        self.reply_queue = queue
        return queue

    def _cancel(self, m: commands.Basic.Cancel) -> None:
        consumer = self.consumers.pop(m.consumer_tag, None)
        if consumer is not None:
            self._remove_consumer(consumer)
        self._reply(m.nowait, commands.Basic.CancelOk(m.consumer_tag))

    def _remove_consumer(self, consumer: AMQPConsumer) -> None:
        """Stop a consumer; its unacked deliveries stay with the channel (RabbitMQ's
        behaviour: they can still be acked, and return to the queue when it closes)."""
        if consumer.queue is self.reply_queue:
            self.reply_queue = None
        if not consumer.queue.deleted:
            consumer.queue.remove_consumer(consumer, requeue=False)

    def _get(self, m: commands.Basic.Get) -> None:
        conn = self.conn
        name = self._queue_name(m.queue, m.index)
        conn.check("read", name, m.index)
        queue = self._owned_queue(name, m.index)
        entry = queue.get(None if m.no_ack else self.getter)
        if entry is None:
            conn.write(codec.method_frame(self.number, commands.Basic.GetEmpty()))
            return
        tag = self.next_tag
        self.next_tag = tag + 1
        conn.counts.messages_out += 1
        if not m.no_ack:
            self.unacked[tag] = Delivery(queue, entry.seq, self.getter)
            self.unacked_count += 1
        message = entry.message
        ok = commands.Basic.GetOk(
            tag, entry.redelivered, message.exchange, message.routing_key, len(queue)
        )
        self._write_with_content(ok, message)

    # -- acknowledgements ---------------------------------------------------------------

    def _ack_method(self, m: commands.Basic.Ack) -> None:
        self._ack(m.delivery_tag, m.multiple, m.index)

    def _ack(self, tag: int, multiple: bool, index: int) -> None:
        self._settle_later_or_now(tag, multiple, index, None)

    def _nack(self, m: commands.Basic.Nack) -> None:
        self._settle_later_or_now(m.delivery_tag, m.multiple, m.index, m.requeue)

    def _reject(self, m: commands.Basic.Reject) -> None:
        self._settle_later_or_now(m.delivery_tag, False, m.index, m.requeue)

    def _settle_later_or_now(
        self, tag: int, multiple: bool, index: int, requeue: bool | None
    ) -> None:
        """ack (``requeue`` None), nack or reject; in a transaction it takes effect at
        commit, the tag checked now."""
        if not self.transactional:
            self._apply(self._take(tag, multiple, index), requeue)
            return
        self._tags(tag, multiple, index)
        self.tx_acks.append(lambda: self._apply(self._take(tag, multiple, index), requeue))

    def _apply(self, deliveries: list[Delivery], requeue: bool | None) -> None:
        if requeue is None:
            self._settle(deliveries, lambda q, s: q.ack(s))
        elif requeue:
            self._requeue(deliveries)
        else:
            self._settle(deliveries, lambda q, s: q.reject(s, False))

    def _tags(self, tag: int, multiple: bool, index: int) -> list[int]:
        """The unacked delivery tags an ack/nack/reject names; an unknown tag is a channel
        error (406)."""
        unacked = self.unacked
        if multiple:
            tags = [t for t in unacked if t <= tag] if tag else list(unacked)
        elif tag in unacked:
            tags = [tag]
        else:
            tags = []
        if not tags and (tag or not multiple):
            raise ChannelError(PRECONDITION_FAILED, f"unknown delivery tag {tag}", index)
        return tags

    def _take(self, tag: int, multiple: bool, index: int) -> list[Delivery]:
        """Remove and return the deliveries an ack/nack/reject names."""
        unacked = self.unacked
        taken = [unacked.pop(t) for t in self._tags(tag, multiple, index)]
        for delivery in taken:
            consumer = delivery.consumer
            if type(consumer) is AMQPConsumer:
                consumer.unacked -= 1
        self.unacked_count -= len(taken)
        return taken

    def _settle(self, deliveries: list[Delivery], settle: Callable[[Queue, int], Any]) -> None:
        queues: dict[int, Queue] = {}
        for delivery in deliveries:
            queue = delivery.queue
            settle(queue, delivery.seq)
            queues[id(queue)] = queue
        for queue in queues.values():
            queue.dispatch()

    def _requeue(self, deliveries: list[Delivery]) -> None:
        by_queue: dict[int, tuple[Queue, list[int]]] = {}
        for delivery in deliveries:
            entry = by_queue.setdefault(id(delivery.queue), (delivery.queue, []))
            entry[1].append(delivery.seq)
        for queue, seqs in by_queue.values():
            queue.requeue(seqs)
            queue.dispatch()

    def _recover(self, m: commands.Basic.Recover | commands.Basic.RecoverAsync) -> None:
        deliveries = list(self.unacked.values())
        self.unacked.clear()
        self.unacked_count = 0
        for consumer in self.consumers.values():
            consumer.unacked = 0
        self._requeue(deliveries)
        if isinstance(m, commands.Basic.Recover):
            self.conn.write(codec.method_frame(self.number, commands.Basic.RecoverOk()))

    # -- confirms and transactions ------------------------------------------------------

    def _confirm_select(self, m: commands.Confirm.Select) -> None:
        if self.transactional:
            raise ChannelError(
                PRECONDITION_FAILED, "cannot switch from tx to confirm mode", m.index
            )
        self.confirming = True
        self._reply(m.nowait, commands.Confirm.SelectOk())

    def _tx_select(self, m: commands.Tx.Select) -> None:
        if self.confirming:
            raise ChannelError(
                PRECONDITION_FAILED, "cannot switch from confirm to tx mode", m.index
            )
        self.transactional = True
        self.conn.write(codec.method_frame(self.number, commands.Tx.SelectOk()))

    def _tx_commit(self, m: commands.Tx.Commit) -> None:
        if not self.transactional:
            raise ChannelError(PRECONDITION_FAILED, "channel is not transactional", m.index)
        publishes, self.tx_publishes = self.tx_publishes, []
        acks, self.tx_acks = self.tx_acks, []
        for message, mandatory in publishes:
            self._route(message, mandatory)
        for settle in acks:
            settle()
        self.conn.write_after_sync(codec.method_frame(self.number, commands.Tx.CommitOk()))

    def _tx_rollback(self, m: commands.Tx.Rollback) -> None:
        if not self.transactional:
            raise ChannelError(PRECONDITION_FAILED, "channel is not transactional", m.index)
        self.tx_publishes.clear()
        self.tx_acks.clear()
        self.conn.write(codec.method_frame(self.number, commands.Tx.RollbackOk()))

    # -- channel ------------------------------------------------------------------------

    def _flow(self, m: commands.Channel.Flow) -> None:
        self.flow_active = m.active
        self.conn.write(codec.method_frame(self.number, commands.Channel.FlowOk(m.active)))
        if m.active:
            self._dispatch_all()

    def _dispatch_all(self) -> None:
        for queue in {id(c.queue): c.queue for c in self.consumers.values()}.values():
            queue.dispatch()

    def dispatch(self) -> None:
        """Room for output again: let the channel's queues deliver."""
        if self.consumers:
            self._dispatch_all()

    def close(self) -> None:
        """The channel ends: consumers stop, unacked deliveries go back to their queues."""
        self.content = None
        consumers = list(self.consumers.values())
        self.consumers.clear()
        for consumer in consumers:
            self._remove_consumer(consumer)
        deliveries = list(self.unacked.values())
        self.unacked.clear()
        self.unacked_count = 0
        self._requeue([d for d in deliveries if not d.queue.deleted])
        self.tx_publishes.clear()
        self.tx_acks.clear()
        if self.reply_queue is not None and not self.reply_queue.deleted:
            self.conn.vhost.delete_queue(self.reply_queue.name)
        self.reply_queue = None

    def _reply(self, nowait: bool, method: Any) -> None:
        if not nowait:
            self.conn.write(codec.method_frame(self.number, method))


def _expiration_ms(value: str, index: int) -> int:
    try:
        ms = int(value)
    except ValueError:
        ms = -1
    if ms < 0:
        raise ChannelError(PRECONDITION_FAILED, f"invalid expiration '{value}'", index)
    return ms


def _name(method: Any) -> str:
    return getattr(method, "name", type(method).__name__)
