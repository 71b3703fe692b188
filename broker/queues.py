"""Queues: FIFO buffers between exchanges and consumers.

A queue pushes messages to consumers that say they are ready (credit from prefetch or an
inflight window, room in their write buffer) and keeps every delivery that awaits an ack
under its sequence number until it is acked, rejected or requeued.  Consumers are
protocol objects (an AMQP consumer, an MQTT session, a WebSocket subscription) that
implement the small ``Consumer`` protocol below.

Durability: a persistent message on a durable queue is handed to the store's write-behind
log at enqueue and removed at ack; the publisher waits for ``store.sync()`` before it
confirms, so confirms always follow the fsync.
"""

from __future__ import annotations

import bisect
import datetime
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from broker.errors import PreconditionFailed
from broker.message import Message, encode_message

if TYPE_CHECKING:
    from broker.store.base import Store
    from broker.vhost import VHost

#: Ready messages beyond which a queue with consumers asks publishers to wait (broker.flow);
#: it releases them once below half of it.
BACKLOG = 128

#: Outcomes of ``Queue.publish``.
REJECTED, ACCEPTED, STORED = 0, 1, 2

OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")


class Consumer(Protocol):
    """What a queue needs from whoever consumes it."""

    def ready(self) -> bool:
        """Whether one more delivery can be taken now."""

    def deliver(self, queue: Queue, message: Message, seq: int, redelivered: bool) -> bool:
        """Take a delivery; True when it awaits an ack under ``seq``, False when it was
        settled on delivery (no-ack consumers, MQTT QoS 0)."""

    def queue_deleted(self, queue: Queue) -> None:
        """The queue went away under the consumer (consumer cancel notification)."""

    # Optionally, ``deliver_settled(queue, messages) -> int``: take from the front of a
    # run of one publisher's messages (one topic, QoS and properties) as many as can be
    # delivered and settled at once, without a look at each (MQTT QoS 0); how many it took.
    #
    # Optionally, ``room() -> int`` (how many deliveries it takes now) with
    # ``deliver_entries(queue, entries) -> list[bool]``: a sole consumer takes a backlog in
    # batches (one write each) instead of one ``deliver`` per message; the flags say which
    # await an ack, as ``deliver``'s result does.


_INF = float("inf")


class Entry:
    """A message's place in one queue."""

    __slots__ = ("message", "seq", "redelivered", "deadline", "stored", "consumer")

    def __init__(self, message: Message, seq: int, deadline: float | None) -> None:
        self.message = message
        self.seq = seq
        self.redelivered = False
        self.deadline = deadline
        self.stored = False
        self.consumer: Consumer | None = None

    def expired(self, now: float) -> bool:
        deadline = self.deadline
        expires_at = self.message.expires_at
        return (deadline is not None and now >= deadline) or (
            expires_at is not None and now >= expires_at
        )


def stored_form(message: Message) -> bytes:
    """Encode a message for the store once, however many queues it lands in."""
    cache = message.cache
    if cache is None:
        cache = message.cache = {}
    data = cache.get("store")
    if data is None:
        data = cache["store"] = encode_message(message)
    return data


class QueueArguments:
    """The x-arguments a queue honours, validated once at declare time."""

    __slots__ = (
        "message_ttl",
        "expires",
        "max_length",
        "max_length_bytes",
        "overflow",
        "dead_letter_exchange",
        "dead_letter_routing_key",
        "max_priority",
        "single_active_consumer",
    )

    def __init__(self, arguments: dict[str, Any]) -> None:
        self.message_ttl = _non_negative(arguments, "x-message-ttl")
        self.expires = _non_negative(arguments, "x-expires", positive=True)
        self.max_length = _non_negative(arguments, "x-max-length")
        self.max_length_bytes = _non_negative(arguments, "x-max-length-bytes")
        self.overflow = arguments.get("x-overflow", "drop-head")
        if self.overflow not in OVERFLOW_MODES:
            raise PreconditionFailed(f"invalid x-overflow {self.overflow!r}")
        self.dead_letter_exchange = arguments.get("x-dead-letter-exchange")
        self.dead_letter_routing_key = arguments.get("x-dead-letter-routing-key")
        self.max_priority = _non_negative(arguments, "x-max-priority")
        self.single_active_consumer = arguments.get("x-single-active-consumer", False)
        if not isinstance(self.single_active_consumer, bool):
            raise PreconditionFailed("x-single-active-consumer must be a boolean")
        if self.max_priority is not None and self.max_priority > 255:
            raise PreconditionFailed("x-max-priority must be at most 255")


def _non_negative(arguments: dict[str, Any], name: str, positive: bool = False) -> int | None:
    value = arguments.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < (1 if positive else 0):
        raise PreconditionFailed(f"invalid {name} {value!r}")
    return value


class Queue:
    """A FIFO queue with consumers, acks, TTL, length limits and dead-lettering."""

    is_exchange = False

    def __init__(
        self,
        vhost: VHost,
        name: str,
        *,
        durable: bool = True,
        exclusive_owner: object = None,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments = arguments or {}
        self.args = QueueArguments(self.arguments)
        self.deleted = False
        self.consumers: list[Consumer] = []
        self.unacked: dict[int, Entry] = {}
        self.ready_bytes = 0
        self.last_used = time.monotonic()
        self.published = 0
        self.delivered = 0
        self._ever_consumed = False
        self._ready: deque[Entry] = deque()
        self._next_seq = 1
        self._rr = 0
        self._prioritised = False
        self._ttl = None if self.args.message_ttl is None else self.args.message_ttl / 1000
        inf = float("inf")
        self._max_length = inf if self.args.max_length is None else self.args.max_length
        self._max_bytes = inf if self.args.max_length_bytes is None else self.args.max_length_bytes

    @property
    def store(self) -> Store:
        return self.vhost.store

    def __len__(self) -> int:
        """Messages ready for delivery (the AMQP message count)."""
        return len(self._ready)

    def record(self) -> dict:
        return {
            "durable": self.durable,
            "auto_delete": self.auto_delete,
            "arguments": self.arguments,
            "next_seq": self._next_seq,
        }

    # -- publishing ---------------------------------------------------------------------

    def publish(self, message: Message) -> int:
        """Enqueue a routed message; returns REJECTED, ACCEPTED or STORED (durably logged,
        so the publisher must await ``store.sync()`` before confirming)."""
        if (
            len(self._ready) >= self._max_length
            or self.ready_bytes + len(message.body) > self._max_bytes
        ) and not self._make_room(message):
            if self.args.overflow == "reject-publish-dlx":
                self._dead_letter_message(message, "maxlen")
            return REJECTED
        ttl = self._ttl
        seq = self._next_seq
        self._next_seq = seq + 1
        self.published += 1
        stored = message.persistent and self.durable
        if stored:
            self._log(seq, message)
        consumers = self.consumers
        if ttl is None and not self._ready and consumers:
            if len(consumers) == 1:
                consumer = consumers[0]
                if not consumer.ready():
                    consumer = None
            else:
                consumer = self._next_consumer()
            if consumer is not None:
                # the fast path: straight to a ready consumer, no queue entry unless unacked
                self.delivered += 1
                if consumer.deliver(self, message, seq, False):
                    entry = self.unacked[seq] = Entry(message, seq, None)
                    entry.stored = stored
                    entry.consumer = consumer
                elif stored:
                    self.store.dequeue(self.vhost.name, self.name, seq)
                return STORED if stored else ACCEPTED
        entry = Entry(message, seq, None if ttl is None else time.time() + ttl)
        entry.stored = stored
        outcome = STORED if stored else ACCEPTED
        if ttl == 0:
            consumer = self._next_consumer() if self.consumers else None
            if consumer is not None:
                self._deliver(consumer, entry)
            else:
                self._dead_letter(entry, "expired")
            return outcome
        self._push(entry)
        if self.consumers and len(self._ready) >= BACKLOG:
            self.vhost.flow.backlog(self)
        return outcome

    def publish_run(self, messages: list[Message]) -> tuple[bool, set[int] | None]:
        """``publish`` each of a run of one publisher's messages, in order.  While the
        queue has no backlog, no TTL, no byte limit and one consumer ready for more, the
        messages go straight to it with those checks made once for the run; the rest are
        queued together where the checks allow, else one by one.  Returns whether any was
        stored and the indexes of the refused ones."""
        count = 0
        consumers = self.consumers
        if (
            len(consumers) == 1
            and self._ttl is None
            and not self._ready  # so a length limit of one or more holds every message
            and self._max_length >= 1
            and self._max_bytes == _INF
        ):
            consumer = consumers[0]
            durable = self.durable
            seq = self._next_seq
            unacked = self.unacked
            settle = getattr(consumer, "deliver_settled", None)
            if settle is not None and not (durable and messages[0].persistent):
                count = settle(self, messages)
                seq += count
            for message in messages[count:] if count else messages:
                if (durable and message.persistent) or not consumer.ready():
                    break
                if consumer.deliver(self, message, seq, False):
                    entry = unacked[seq] = Entry(message, seq, None)
                    entry.consumer = consumer
                seq += 1
                count += 1
            self._next_seq = seq
            self.published += count
            self.delivered += count
        stored = False
        if count < len(messages) and (
            self._ready or not consumers or (len(consumers) == 1 and not consumers[0].ready())
        ):
            queued, stored = self._enqueue_run(messages, count)
            count += queued
        refused: set[int] | None = None
        for index in range(count, len(messages)):
            outcome = self.publish(messages[index])
            if outcome == STORED:
                stored = True
            elif outcome == REJECTED:
                if refused is None:
                    refused = set()
                refused.add(index)
        return stored, refused

    def _enqueue_run(self, messages: list[Message], start: int) -> tuple[int, bool]:
        """Queue ``messages[start:]`` where ``publish`` would queue each (a backlog, or no
        consumer with room), with its checks made once: no TTL, no byte limit, and room
        for all of them under the length limit.  How many it queued (all or none) and
        whether any was stored."""
        ready = self._ready
        rest = len(messages) - start
        if self._ttl is not None or self._max_bytes != _INF or len(ready) + rest > self._max_length:
            return 0, False
        seq = self._next_seq
        durable = self.durable
        stored = False
        push = self._push
        for index in range(start, len(messages)):
            message = messages[index]
            entry = Entry(message, seq, None)
            if durable and message.persistent:
                entry.stored = stored = True
                self._log(seq, message)
            push(entry)
            seq += 1
        self._next_seq = seq
        self.published += rest
        if self.consumers and len(ready) >= BACKLOG:
            self.vhost.flow.backlog(self)
        return rest, stored

    def _log(self, seq: int, message: Message) -> None:
        """Have the store keep a persistent message queued at ``seq`` (durable queues)."""
        self.store.enqueue(
            self.vhost.name, self.name, seq, message.storage_id(), stored_form(message)
        )

    def restore(self, seq: int, message: Message) -> None:
        """Put back a message recovered from the store (startup only)."""
        entry = Entry(message, seq, None)
        entry.stored = True
        self._next_seq = max(self._next_seq, seq + 1)
        self._push(entry)

    def _make_room(self, message: Message) -> bool:
        args = self.args
        size = len(message.body)
        while self._ready and (
            (args.max_length is not None and len(self._ready) >= args.max_length)
            or (
                args.max_length_bytes is not None
                and self.ready_bytes + size > args.max_length_bytes
            )
        ):
            if args.overflow != "drop-head":
                return False
            self._dead_letter(self._pop(), "maxlen")
        if args.max_length == 0 or (
            args.max_length_bytes is not None and size > args.max_length_bytes
        ):
            if args.overflow != "drop-head":
                return False
            self._dead_letter_message(message, "maxlen")
            return False
        return True

    # -- consumers ----------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        """Attach a consumer.  Consumers with a ``priority`` attribute (AMQP x-priority)
        are kept highest first: lower ones get messages only while higher ones have no
        room."""
        priority = getattr(consumer, "priority", 0)
        if priority or self._prioritised:
            self._prioritised = True
            ranks = [-getattr(c, "priority", 0) for c in self.consumers]
            self.consumers.insert(bisect.bisect_right(ranks, -priority), consumer)
        else:
            self.consumers.append(consumer)
        self._ever_consumed = True
        self.last_used = time.monotonic()
        self.dispatch()

    def remove_consumer(self, consumer: Consumer, *, requeue: bool = True) -> None:
        """Detach a consumer; with ``requeue`` its unacked deliveries go back to the queue."""
        if consumer in self.consumers:
            self.consumers.remove(consumer)
        if requeue:
            self.return_unacked(consumer)
        self.last_used = time.monotonic()
        if not self.consumers:
            self.vhost.flow.forget(self)
            if self.auto_delete and self._ever_consumed:
                self.vhost.delete_queue(self.name)

    def return_unacked(self, consumer: Consumer) -> int:
        """Requeue every delivery ``consumer`` has not acked (it stays a consumer)."""
        return self.requeue([s for s, e in self.unacked.items() if e.consumer is consumer])

    def dispatch(self) -> None:
        """Deliver ready messages while some consumer has room."""
        ready = self._ready
        consumers = self.consumers
        if len(consumers) == 1 and ready and hasattr(consumers[0], "deliver_entries"):
            self._dispatch_batches(consumers[0])
            return
        pop_live = self._pop_live
        while ready and consumers:
            if len(consumers) == 1:
                consumer = consumers[0]
                if not consumer.ready():
                    break
            else:
                consumer = self._next_consumer()
                if consumer is None:
                    break
            entry = pop_live()
            if entry is not None:
                self._deliver(consumer, entry)
        if len(ready) < BACKLOG // 2:
            self.vhost.flow.drained(self)

    def _dispatch_batches(self, consumer: Any) -> None:
        """``dispatch`` to a sole consumer that takes batches: as many entries as it has
        room for at a time, the expired ones dead-lettered on the way."""
        ready = self._ready
        pop_live = self._pop_live
        unacked = self.unacked
        while ready:
            room = consumer.room()
            if room <= 0:
                break
            entries = []
            while ready and len(entries) < room:
                entry = pop_live()
                if entry is not None:
                    entries.append(entry)
            if not entries:
                continue
            self.delivered += len(entries)
            for entry, awaits_ack in zip(
                entries, consumer.deliver_entries(self, entries), strict=True
            ):
                if awaits_ack:
                    entry.consumer = consumer
                    unacked[entry.seq] = entry
                else:
                    self._settle(entry)
        if len(ready) < BACKLOG // 2:
            self.vhost.flow.drained(self)

    def _pop_live(self) -> Entry | None:
        """The next ready entry, or None when it had expired (it is dead-lettered)."""
        entry = self._pop()
        timed = entry.deadline is not None or entry.message.expires_at is not None
        if timed and entry.expired(time.time()):
            self._dead_letter(entry, "expired")
            return None
        return entry

    def get(self, consumer: Consumer | None) -> Entry | None:
        """basic.get: take one ready message; with a consumer it awaits an ack."""
        self.last_used = time.monotonic()
        now = time.time()
        while self._ready:
            entry = self._pop()
            if entry.expired(now):
                self._dead_letter(entry, "expired")
                continue
            self.delivered += 1
            if consumer is None:
                self._settle(entry)
            else:
                entry.consumer = consumer
                self.unacked[entry.seq] = entry
            return entry
        return None

    def _next_consumer(self) -> Consumer | None:
        """The consumer to deliver to next: round robin among the ready ones of the
        highest priority that has any; with x-single-active-consumer only the first."""
        consumers = self.consumers
        n = len(consumers)
        if n == 1 or self.args.single_active_consumer:
            first = consumers[0]
            return first if first.ready() else None
        if self._prioritised:
            return self._next_by_priority()
        for k in range(n):
            index = (self._rr + k) % n
            consumer = consumers[index]
            if consumer.ready():
                self._rr = index + 1
                return consumer
        return None

    def _next_by_priority(self) -> Consumer | None:
        consumers = self.consumers
        n = len(consumers)
        start = 0
        while start < n:
            priority = getattr(consumers[start], "priority", 0)
            end = start + 1
            while end < n and getattr(consumers[end], "priority", 0) == priority:
                end += 1
            size = end - start
            for k in range(size):
                index = start + (self._rr + k) % size
                consumer = consumers[index]
                if consumer.ready():
                    self._rr = index - start + 1
                    return consumer
            start = end
        return None

    def _deliver(self, consumer: Consumer, entry: Entry) -> None:
        self.delivered += 1
        if consumer.deliver(self, entry.message, entry.seq, entry.redelivered):
            entry.consumer = consumer
            self.unacked[entry.seq] = entry
        else:
            self._settle(entry)

    # -- acknowledgements ---------------------------------------------------------------

    def ack(self, seq: int) -> bool:
        entry = self.unacked.pop(seq, None)
        if entry is None:
            return False
        self._settle(entry)
        return True

    def ack_all(self, seqs: list[int]) -> None:
        """``ack`` each of ``seqs``: a consumer acks a round of deliveries at once."""
        pop = self.unacked.pop
        for seq in seqs:
            entry = pop(seq, None)
            if entry is not None and entry.stored:
                self._settle(entry)

    def reject(self, seq: int, requeue: bool) -> bool:
        """nack/reject one delivery: back to the head of the queue, or dead-lettered."""
        if requeue:
            return self.requeue([seq]) == 1
        entry = self.unacked.pop(seq, None)
        if entry is None:
            return False
        self._dead_letter(entry, "rejected")
        return True

    def requeue(self, seqs: list[int]) -> int:
        """Return unacked deliveries to the head of the queue in their original order."""
        entries = [e for s in seqs if (e := self.unacked.pop(s, None)) is not None]
        entries.sort(key=lambda e: e.seq, reverse=True)
        for entry in entries:
            entry.redelivered = True
            entry.consumer = None
            self._push_front(entry)
        if entries:
            self.dispatch()
        return len(entries)

    def _settle(self, entry: Entry) -> None:
        if entry.stored:
            self.store.dequeue(self.vhost.name, self.name, entry.seq)
            entry.stored = False

    # -- purge, expiry, dead-lettering --------------------------------------------------

    def purge(self) -> int:
        count = len(self._ready)
        for entry in self._drain():
            entry.stored = False
        self.ready_bytes = 0
        if self.durable:
            self.store.purge(self.vhost.name, self.name)
        return count

    def expire(self, now: float) -> None:
        """Drop expired messages at the head (RabbitMQ expires only from the head)."""
        while self._ready and self._peek().expired(now):
            self._dead_letter(self._pop(), "expired")

    def close(self) -> None:
        """The queue is deleted: tell consumers, forget messages."""
        self.deleted = True
        self.vhost.flow.forget(self)
        for consumer in list(self.consumers):
            consumer.queue_deleted(self)
        self.consumers.clear()
        self._drain()
        self.unacked.clear()

    def _dead_letter(self, entry: Entry, reason: str) -> None:
        self._settle(entry)
        self._dead_letter_message(entry.message, reason)

    def _dead_letter_message(self, message: Message, reason: str) -> None:
        exchange = self.args.dead_letter_exchange
        if exchange is None:
            return
        routing_key = self.args.dead_letter_routing_key or message.routing_key
        properties = message.properties.copy()
        headers = dict(properties.headers or {})
        deaths: list[dict] = list(headers.get("x-death") or [])
        for death in deaths:
            if death.get("queue") == self.name and death.get("reason") == reason:
                if reason != "rejected":
                    return  # a dead-letter cycle without rejection: drop, as RabbitMQ does
                death["count"] = death.get("count", 1) + 1
                break
        else:
            deaths.insert(
                0,
                {
                    "count": 1,
                    "reason": reason,
                    "queue": self.name,
                    "time": datetime.datetime.fromtimestamp(int(time.time()), datetime.UTC),
                    "exchange": message.exchange,
                    "routing-keys": [message.routing_key],
                },
            )
            if properties.expiration is not None:
                deaths[0]["original-expiration"] = properties.expiration
        headers["x-death"] = deaths
        headers.setdefault("x-first-death-reason", reason)
        headers.setdefault("x-first-death-queue", self.name)
        headers.setdefault("x-first-death-exchange", message.exchange)
        properties.headers = headers
        properties.expiration = None
        self.vhost.publish(message.derive(exchange, routing_key, properties))

    # -- the ready list (a priority queue overrides these) ------------------------------

    def _push(self, entry: Entry) -> None:
        self._ready.append(entry)
        self.ready_bytes += len(entry.message.body)

    def _push_front(self, entry: Entry) -> None:
        self._ready.appendleft(entry)
        self.ready_bytes += len(entry.message.body)

    def _pop(self) -> Entry:
        entry = self._ready.popleft()
        self.ready_bytes -= len(entry.message.body)
        return entry

    def _peek(self) -> Entry:
        return self._ready[0]

    def _drain(self) -> list[Entry]:
        entries = list(self._ready)
        self._ready.clear()
        return entries


class PriorityQueue(Queue):
    """x-max-priority: one FIFO per priority level, highest served first."""

    def __init__(self, vhost: VHost, name: str, **kwargs: Any) -> None:
        super().__init__(vhost, name, **kwargs)
        self._levels: list[deque[Entry]] = [deque() for _ in range(self.args.max_priority + 1)]
        self._count = 0
        self._ready = _CountView(self)  # type: ignore[assignment]

    def __len__(self) -> int:
        return self._count

    def _level(self, entry: Entry) -> deque[Entry]:
        priority = entry.message.properties.priority or 0
        return self._levels[min(max(priority, 0), len(self._levels) - 1)]

    def _push(self, entry: Entry) -> None:
        self._level(entry).append(entry)
        self._count += 1
        self.ready_bytes += len(entry.message.body)

    def _push_front(self, entry: Entry) -> None:
        self._level(entry).appendleft(entry)
        self._count += 1
        self.ready_bytes += len(entry.message.body)

    def _pop(self) -> Entry:
        for level in reversed(self._levels):
            if level:
                entry = level.popleft()
                self._count -= 1
                self.ready_bytes -= len(entry.message.body)
                return entry
        raise IndexError("pop from an empty queue")

    def _peek(self) -> Entry:
        for level in reversed(self._levels):
            if level:
                return level[0]
        raise IndexError("peek into an empty queue")

    def _drain(self) -> list[Entry]:
        entries = [e for level in reversed(self._levels) for e in level]
        for level in self._levels:
            level.clear()
        self._count = 0
        return entries


class _CountView:
    """Lets the base class's ``if self._ready`` / ``len(self._ready)`` see all levels."""

    __slots__ = ("_queue",)

    def __init__(self, queue: PriorityQueue) -> None:
        self._queue = queue

    def __len__(self) -> int:
        return self._queue._count

    def __bool__(self) -> bool:
        return self._queue._count > 0

    def __getitem__(self, index: int) -> Entry:
        if index != 0:
            raise IndexError(index)
        return self._queue._peek()


def make_queue(vhost: VHost, name: str, **kwargs: Any) -> Queue:
    arguments = kwargs.get("arguments") or {}
    if arguments.get("x-max-priority") is not None:
        return PriorityQueue(vhost, name, **kwargs)
    return Queue(vhost, name, **kwargs)
