"""A vhost: one namespace of exchanges, queues and bindings, and routing through them."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from broker.errors import AccessRefused, NotFound, PreconditionFailed, ResourceLocked
from broker.exchanges import EXCHANGE_TYPES, Binding, Destination, Exchange
from broker.flow import FlowControl
from broker.queues import REJECTED, STORED, Queue, make_queue

if TYPE_CHECKING:
    from broker.message import Message
    from broker.store.base import Store

BUILTIN_EXCHANGES = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)


class DefaultExchange(Exchange):
    """The nameless direct exchange every queue is implicitly bound to by its name."""

    type = "direct"

    def __init__(self, vhost: VHost) -> None:
        super().__init__("")
        self._queues = vhost.queues

    def route(self, message: Message) -> Iterable[Destination]:
        queue = self._queues.get(message.routing_key)
        return () if queue is None else (queue,)

    def bind(self, binding: Binding) -> bool:
        raise AccessRefused("operation not permitted on the default exchange")

    unbind = bind


class PublishResult:
    """What routing did with one message: how many queues took it, whether the publisher
    must await the store before confirming, and whether a full queue refused it."""

    __slots__ = ("routed", "stored", "rejected", "refused")

    def __init__(self) -> None:
        self.routed = 0
        self.stored = False
        self.rejected = False
        #: publish_many: which messages of the run a full queue refused, if any
        self.refused: set[int] | None = None


class VHost:
    def __init__(self, name: str, store: Store, flow: FlowControl | None = None) -> None:
        self.name = name
        self.store = store
        self.flow = flow or FlowControl()
        #: what an operator said about the vhost (management API), kept but not acted on
        self.description = ""
        self.tags: list[str] = []
        self.queues: dict[str, Queue] = {}
        self.exchanges: dict[str, Exchange] = {"": DefaultExchange(self)}
        for exchange_name, kind in BUILTIN_EXCHANGES:
            self.exchanges[exchange_name] = EXCHANGE_TYPES[kind](exchange_name)

    # -- routing ------------------------------------------------------------------------

    def publish(self, message: Message) -> PublishResult:
        """Route a message to every matching queue once; raises NotFound for a missing
        exchange."""
        exchange = self.exchanges.get(message.exchange)
        if exchange is None:
            raise NotFound(f"no exchange '{message.exchange}' in vhost '{self.name}'")
        result = PublishResult()
        if exchange.exchange_bindings or exchange.alternate_exchange:
            queues = self.route(exchange, message)
        else:
            queues = exchange.route(message)
        for queue in queues:
            outcome = queue.publish(message)
            if outcome == REJECTED:
                result.rejected = True
            else:
                result.routed += 1
                if outcome == STORED:
                    result.stored = True
        return result

    def publish_many(self, messages: list[Message]) -> PublishResult:
        """Route a run of messages that share exchange, routing key and headers (one
        publisher's stream): the route is computed once and each queue takes the run in
        order.  The result's ``routed`` is how many queues the route has, ``stored``
        whether any message went to durable storage (confirm after the store's sync), and
        ``refused`` the indexes of messages some full queue refused."""
        first = messages[0]
        exchange = self.exchanges.get(first.exchange)
        if exchange is None:
            raise NotFound(f"no exchange '{first.exchange}' in vhost '{self.name}'")
        if exchange.exchange_bindings or exchange.alternate_exchange:
            queues = self.route(exchange, first)
        else:
            queues = exchange.route(first)
        result = PublishResult()
        result.routed = len(queues)
        for queue in queues:
            stored, refused = queue.publish_run(messages)
            result.stored = result.stored or stored
            if refused:
                result.rejected = True
                if result.refused is None:
                    result.refused = refused
                else:
                    result.refused |= refused
        return result

    def route(self, exchange: Exchange, message: Message) -> list[Queue]:
        """The queues a message reaches, following exchange-to-exchange bindings and
        alternate exchanges, each queue once."""
        found: list[Queue] = []
        nested: list[Exchange] = []
        for dest in exchange.route(message):
            (nested if dest.is_exchange else found).append(dest)
        if nested:
            found = self._route_nested(exchange, found, nested, message)
        if not found and exchange.alternate_exchange:
            alternate = self.exchanges.get(exchange.alternate_exchange)
            if alternate is not None and alternate is not exchange:
                return self.route(alternate, message)
        return found

    def _route_nested(
        self, origin: Exchange, found: list[Queue], pending: list[Exchange], message: Message
    ) -> list[Queue]:
        """Follow exchange-to-exchange bindings breadth-first, each exchange once."""
        seen_exchanges = {id(origin)}
        seen_queues = {id(q) for q in found}
        while pending:
            exchange = pending.pop()
            if id(exchange) in seen_exchanges:
                continue
            seen_exchanges.add(id(exchange))
            for dest in exchange.route(message):
                if dest.is_exchange:
                    pending.append(dest)
                elif id(dest) not in seen_queues:
                    seen_queues.add(id(dest))
                    found.append(dest)
        return found

    # -- exchanges ----------------------------------------------------------------------

    def declare_exchange(
        self,
        name: str,
        kind: str = "direct",
        *,
        durable: bool = True,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
        passive: bool = False,
    ) -> Exchange:
        existing = self.exchanges.get(name)
        if passive:
            if existing is None:
                raise NotFound(f"no exchange '{name}' in vhost '{self.name}'")
            return existing
        arguments = arguments or {}
        if existing is not None:
            if (existing.type, existing.durable, existing.auto_delete, existing.internal) != (
                kind,
                durable,
                auto_delete,
                internal,
            ) or _significant(existing.arguments) != _significant(arguments):
                raise PreconditionFailed(
                    f"inequivalent arguments for exchange '{name}' in vhost '{self.name}'"
                )
            return existing
        if name.startswith("amq."):
            raise AccessRefused(f"exchange name '{name}' contains reserved prefix 'amq.*'")
        factory = EXCHANGE_TYPES.get(kind)
        if factory is None:
            raise NotFound(f"invalid exchange type '{kind}'")
        exchange = factory(
            name, durable=durable, auto_delete=auto_delete, internal=internal, arguments=arguments
        )
        self.exchanges[name] = exchange
        if durable:
            self.store.put_exchange(self.name, name, exchange.record())
        return exchange

    def delete_exchange(self, name: str, *, if_unused: bool = False) -> None:
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise NotFound(f"no exchange '{name}' in vhost '{self.name}'")
        if name == "" or name.startswith("amq."):
            raise AccessRefused(f"exchange '{name}' is built in")
        if if_unused and (exchange.bindings or self._bound_as_destination(exchange)):
            raise PreconditionFailed(f"exchange '{name}' in use")
        del self.exchanges[name]
        for other in self.exchanges.values():
            other.unbind_destination(exchange)
        if exchange.durable:
            self.store.delete_exchange(self.name, name)

    def exchange(self, name: str) -> Exchange:
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise NotFound(f"no exchange '{name}' in vhost '{self.name}'")
        return exchange

    def _bound_as_destination(self, exchange: Exchange) -> bool:
        return any(
            b.destination is exchange for e in self.exchanges.values() for b in e.bindings.values()
        )

    # -- queues -------------------------------------------------------------------------

    def declare_queue(
        self,
        name: str,
        *,
        durable: bool = True,
        exclusive_owner: object = None,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        passive: bool = False,
        owner: object = None,
        reserved: bool = False,
    ) -> Queue:
        """Declare a queue.  ``exclusive_owner`` makes it exclusive to that connection;
        ``owner`` is who asks (for the exclusivity check of existing queues); ``reserved``
        allows a server-generated name under ``amq.``."""
        existing = self.queues.get(name)
        if existing is not None:
            requester = exclusive_owner if exclusive_owner is not None else owner
            if existing.exclusive_owner is not None and existing.exclusive_owner is not requester:
                raise ResourceLocked(
                    f"cannot obtain exclusive access to locked queue '{name}' in vhost "
                    f"'{self.name}'"
                )
            if passive:
                return existing
            if (
                (existing.durable, existing.auto_delete) != (durable, auto_delete)
                or (_significant(existing.arguments) != _significant(arguments or {}))
                or ((existing.exclusive_owner is None) != (exclusive_owner is None))
            ):
                raise PreconditionFailed(
                    f"inequivalent arguments for queue '{name}' in vhost '{self.name}'"
                )
            return existing
        if passive:
            raise NotFound(f"no queue '{name}' in vhost '{self.name}'")
        if name.startswith("amq.") and not reserved:
            raise AccessRefused(f"queue name '{name}' contains reserved prefix 'amq.*'")
        queue = make_queue(
            self,
            name,
            durable=durable,
            exclusive_owner=exclusive_owner,
            auto_delete=auto_delete,
            arguments=arguments,
        )
        self.queues[name] = queue
        if durable and exclusive_owner is None:
            self.store.put_queue(self.name, name, queue.record())
        return queue

    def queue(self, name: str) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            raise NotFound(f"no queue '{name}' in vhost '{self.name}'")
        return queue

    def delete_queue(self, name: str, *, if_unused: bool = False, if_empty: bool = False) -> int:
        """Delete a queue; returns how many ready messages it held."""
        queue = self.queue(name)
        if if_unused and queue.consumers:
            raise PreconditionFailed(f"queue '{name}' in vhost '{self.name}' in use")
        if if_empty and len(queue):
            raise PreconditionFailed(f"queue '{name}' in vhost '{self.name}' not empty")
        count = len(queue)
        del self.queues[name]
        for exchange in list(self.exchanges.values()):
            if exchange.unbind_destination(queue):
                self._auto_delete_exchange(exchange)
        queue.close()
        if queue.durable and queue.exclusive_owner is None:
            self.store.delete_queue(self.name, name)
        return count

    def delete_exclusive(self, owner: object) -> None:
        """The owning connection closed: its exclusive queues go."""
        for name in [n for n, q in self.queues.items() if q.exclusive_owner is owner]:
            self.delete_queue(name)

    def delete_contents(self) -> None:
        """The vhost is being deleted: every queue (with its messages) and every declared
        exchange goes, from the store too; the built-in exchanges stay with the object."""
        for name in list(self.queues):
            self.delete_queue(name)
        for name in list(self.exchanges):
            if name in self.exchanges and name != "" and not name.startswith("amq."):
                self.delete_exchange(name)

    # -- bindings -----------------------------------------------------------------------

    def bind(
        self, destination: Destination, source: str, routing_key: str, arguments: dict | None
    ) -> None:
        exchange = self.exchange(source)
        binding = Binding(destination, routing_key, arguments or {})
        if exchange.bind(binding) and self._durable_binding(exchange, destination):
            self.store.put_binding(
                self.name,
                source,
                _kind(destination),
                destination.name,
                routing_key,
                arguments or {},
            )

    def unbind(
        self, destination: Destination, source: str, routing_key: str, arguments: dict | None
    ) -> None:
        exchange = self.exchange(source)
        binding = Binding(destination, routing_key, arguments or {})
        if not exchange.unbind(binding):
            return
        if self._durable_binding(exchange, destination):
            self.store.delete_binding(
                self.name,
                source,
                _kind(destination),
                destination.name,
                routing_key,
                arguments or {},
            )
        self._auto_delete_exchange(exchange)

    def _auto_delete_exchange(self, exchange: Exchange) -> None:
        if exchange.auto_delete and not exchange.bindings and exchange.name in self.exchanges:
            self.delete_exchange(exchange.name)

    @staticmethod
    def _durable_binding(exchange: Exchange, destination: Destination) -> bool:
        return (
            exchange.durable
            and destination.durable
            and getattr(destination, "exclusive_owner", None) is None
        )

    # -- housekeeping -------------------------------------------------------------------

    def tick(self) -> None:
        """Once a second: expire messages at queue heads and unused queues (x-expires)."""
        now = time.time()
        mono = time.monotonic()
        for queue in list(self.queues.values()):
            if len(queue):
                queue.expire(now)
            expires = queue.args.expires
            if (
                expires is not None
                and not queue.consumers
                and mono - queue.last_used >= expires / 1000
            ):
                self.delete_queue(queue.name)

    def restore(
        self,
        exchanges: list[tuple[str, dict]],
        queues: list[tuple[str, dict]],
        bindings: list[tuple[str, str, str, str, dict]],
        messages: dict[str, list[tuple[int, Message]]],
    ) -> None:
        """Rebuild durable state from the store at startup, without writing it back."""
        for name, record in exchanges:
            if name in self.exchanges:
                continue
            factory = EXCHANGE_TYPES[record["type"]]
            self.exchanges[name] = factory(
                name,
                durable=True,
                auto_delete=record.get("auto_delete", False),
                internal=record.get("internal", False),
                arguments=record.get("arguments") or {},
            )
        for name, record in queues:
            queue = make_queue(
                self,
                name,
                durable=True,
                auto_delete=record.get("auto_delete", False),
                arguments=record.get("arguments") or {},
            )
            self.queues[name] = queue
            for seq, message in messages.get(name, ()):
                queue.restore(seq, message)
        for source, kind, dest_name, routing_key, arguments in bindings:
            exchange = self.exchanges.get(source)
            dest = (self.exchanges if kind == "exchange" else self.queues).get(dest_name)
            if exchange is not None and dest is not None:
                exchange.bind(Binding(dest, routing_key, arguments))


def _kind(destination: Destination) -> str:
    return "exchange" if destination.is_exchange else "queue"


def _significant(arguments: dict[str, Any]) -> dict[str, Any]:
    """Arguments that take part in equivalence checks (RabbitMQ ignores a few)."""
    return {k: v for k, v in arguments.items() if k not in ("x-queue-type",)}
