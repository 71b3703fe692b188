"""Exchanges: where a published message is matched against bindings.

An exchange only answers "which destinations does this message go to"; destinations are
queues or other exchanges, and the vhost follows exchange-to-exchange hops.  Nothing here
knows about protocols.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from broker.errors import PreconditionFailed
from broker.topics import TopicTrie

if TYPE_CHECKING:
    from broker.message import Message

#: A binding's destination: a queue or an exchange (both hashable by identity).
Destination = Any


class Binding:
    """One (destination, routing key, arguments) edge out of an exchange."""

    __slots__ = ("destination", "routing_key", "arguments")

    def __init__(self, destination: Destination, routing_key: str, arguments: dict) -> None:
        self.destination = destination
        self.routing_key = routing_key
        self.arguments = arguments

    def key(self) -> tuple:
        return (id(self.destination), self.routing_key, _freeze(self.arguments))


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


class Exchange:
    """Base exchange: keeps the binding list; subclasses index it for routing."""

    type = ""
    is_exchange = True

    def __init__(
        self,
        name: str,
        *,
        durable: bool = True,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict | None = None,
    ) -> None:
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments = arguments or {}
        self.alternate_exchange: str | None = self.arguments.get("alternate-exchange")
        self.bindings: dict[tuple, Binding] = {}
        #: how many bindings lead to another exchange (routing skips that walk when none)
        self.exchange_bindings = 0

    def bind(self, binding: Binding) -> bool:
        """Add a binding; returns False when it already existed."""
        key = binding.key()
        if key in self.bindings:
            return False
        self.bindings[key] = binding
        self._index(binding)
        self.exchange_bindings += binding.destination.is_exchange
        return True

    def unbind(self, binding: Binding) -> bool:
        found = self.bindings.pop(binding.key(), None)
        if found is None:
            return False
        self._unindex(found)
        self.exchange_bindings -= found.destination.is_exchange
        return True

    def unbind_destination(self, destination: Destination) -> list[Binding]:
        """Drop every binding to a destination being deleted."""
        gone = [b for b in self.bindings.values() if b.destination is destination]
        for binding in gone:
            self.unbind(binding)
        return gone

    def route(self, message: Message) -> Iterable[Destination]:
        raise NotImplementedError

    def record(self) -> dict:
        """The durable description of this exchange."""
        return {
            "type": self.type,
            "durable": self.durable,
            "auto_delete": self.auto_delete,
            "internal": self.internal,
            "arguments": self.arguments,
        }

    def _index(self, binding: Binding) -> None:
        raise NotImplementedError

    def _unindex(self, binding: Binding) -> None:
        raise NotImplementedError


class DirectExchange(Exchange):
    type = "direct"

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._by_key: dict[str, dict[Destination, int]] = {}

    def route(self, message: Message) -> Iterable[Destination]:
        return self._by_key.get(message.routing_key, ())

    def _index(self, binding: Binding) -> None:
        dests = self._by_key.setdefault(binding.routing_key, {})
        dests[binding.destination] = dests.get(binding.destination, 0) + 1

    def _unindex(self, binding: Binding) -> None:
        dests = self._by_key[binding.routing_key]
        if dests[binding.destination] == 1:
            del dests[binding.destination]
            if not dests:
                del self._by_key[binding.routing_key]
        else:
            dests[binding.destination] -= 1


class FanoutExchange(Exchange):
    type = "fanout"

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._dests: dict[Destination, int] = {}

    def route(self, message: Message) -> Iterable[Destination]:
        return self._dests

    def _index(self, binding: Binding) -> None:
        self._dests[binding.destination] = self._dests.get(binding.destination, 0) + 1

    def _unindex(self, binding: Binding) -> None:
        if self._dests[binding.destination] == 1:
            del self._dests[binding.destination]
        else:
            self._dests[binding.destination] -= 1


class TopicExchange(Exchange):
    type = "topic"

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.trie: TopicTrie[Destination] = TopicTrie()

    def route(self, message: Message) -> Iterable[Destination]:
        key = message.routing_key
        hit = self.trie.cache.get(key)
        return hit if hit is not None else self.trie.match(key)

    def _index(self, binding: Binding) -> None:
        self.trie.add(binding.routing_key, binding.destination)

    def _unindex(self, binding: Binding) -> None:
        self.trie.remove(binding.routing_key, binding.destination)


class HeadersExchange(Exchange):
    """Matches message headers against binding arguments (x-match all/any, and the
    ``-with-x`` variants that also compare ``x-`` arguments)."""

    type = "headers"

    def route(self, message: Message) -> Iterable[Destination]:
        headers = message.properties.headers or {}
        found: dict[Destination, None] = {}
        for binding in self.bindings.values():
            if binding.destination not in found and headers_match(binding.arguments, headers):
                found[binding.destination] = None
        return found

    def _index(self, binding: Binding) -> None:
        mode = binding.arguments.get("x-match", "all")
        if mode not in ("all", "any", "all-with-x", "any-with-x"):
            raise PreconditionFailed(f"invalid x-match value {mode!r}")

    def _unindex(self, binding: Binding) -> None:
        pass


def headers_match(arguments: dict, headers: dict) -> bool:
    mode = arguments.get("x-match", "all")
    with_x = mode.endswith("-with-x")
    wanted = [
        (k, v)
        for k, v in arguments.items()
        if k != "x-match" and (with_x or not k.startswith("x-"))
    ]
    if not wanted:
        return mode.startswith("all")

    def one(key: str, value: Any) -> bool:
        if key not in headers:
            return False
        return value is None or headers[key] == value

    if mode.startswith("all"):
        return all(one(k, v) for k, v in wanted)
    return any(one(k, v) for k, v in wanted)


EXCHANGE_TYPES: dict[str, type[Exchange]] = {
    cls.type: cls for cls in (DirectExchange, FanoutExchange, TopicExchange, HeadersExchange)
}
