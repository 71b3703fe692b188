"""Retained values: the last retained message per topic (MQTT syntax), for every protocol.

Kept in a tree of topic levels so a wildcard subscription walks only the branches its
filter can reach instead of testing every retained topic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from broker.message import Message, decode_message, encode_message

if TYPE_CHECKING:
    from broker.store.base import Store


class _Level:
    __slots__ = ("children", "message")

    def __init__(self) -> None:
        self.children: dict[str, _Level] = {}
        self.message: Message | None = None


class RetainedStore:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._root = _Level()
        self._count = 0
        #: observers of every change: (topic, new message or None when cleared, previous)
        self.on_change: list[Callable[[str, Message | None, Message | None], None]] = []

    def __len__(self) -> int:
        return self._count

    def set(self, topic: str, message: Message | None) -> None:
        """Retain a message for a topic; None or an empty body clears it."""
        if message is not None and not message.body:
            message = None
        previous = self._put(topic, message)
        if previous is not None or message is not None:
            self._store.set_retained(topic, None if message is None else encode_message(message))
            for callback in self.on_change:
                callback(topic, message, previous)

    def get(self, topic: str) -> Message | None:
        node = self._root
        for level in topic.split("/"):
            node = node.children.get(level)
            if node is None:
                return None
        return node.message

    def match(self, topic_filter: str) -> Iterator[tuple[str, Message]]:
        """Every retained (topic, message) the MQTT filter matches; expired ones dropped."""
        levels = topic_filter.split("/")
        found: list[tuple[str, Message]] = []
        self._walk(self._root, levels, 0, [], found)
        for topic, message in found:
            if message.expired():
                self.set(topic, None)
            else:
                yield topic, message

    def restore(self, entries: dict[str, bytes]) -> None:
        for topic, data in entries.items():
            self._put(topic, decode_message(data))

    def _put(self, topic: str, message: Message | None) -> Message | None:
        """Set the topic's message; returns the one it replaces."""
        path = [self._root]
        levels = topic.split("/")
        for level in levels:
            child = path[-1].children.get(level)
            if child is None:
                if message is None:
                    return None
                child = path[-1].children[level] = _Level()
            path.append(child)
        leaf = path[-1]
        previous = leaf.message
        leaf.message = message
        self._count += (message is not None) - (previous is not None)
        if message is None:
            for depth in range(len(levels), 0, -1):
                node = path[depth]
                if node.children or node.message is not None:
                    break
                del path[depth - 1].children[levels[depth - 1]]
        return previous

    def _walk(
        self,
        node: _Level,
        levels: list[str],
        i: int,
        prefix: list[str],
        found: list[tuple[str, Message]],
    ) -> None:
        if i == len(levels):
            if node.message is not None:
                found.append(("/".join(prefix), node.message))
            return
        level = levels[i]
        if level == "#":
            self._collect(node, prefix, found, skip_dollar=i == 0)
            return
        if level == "+":
            for name, child in node.children.items():
                if i == 0 and name.startswith("$"):
                    continue
                self._walk(child, levels, i + 1, [*prefix, name], found)
            return
        child = node.children.get(level)
        if child is not None:
            self._walk(child, levels, i + 1, [*prefix, level], found)

    def _collect(
        self, node: _Level, prefix: list[str], found: list[tuple[str, Message]], skip_dollar: bool
    ) -> None:
        """``#``: this level (the parent, as MQTT says ``a/#`` matches ``a``) and below."""
        if node.message is not None and prefix:
            found.append(("/".join(prefix), node.message))
        for name, child in node.children.items():
            if skip_dollar and name.startswith("$"):
                continue
            self._collect(child, [*prefix, name], found, False)
