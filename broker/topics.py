"""Topic syntax and matching shared by every protocol.

Routing keys use AMQP syntax (words separated by ``.``, patterns with ``*`` and ``#``);
MQTT topics use ``/``, ``+`` and ``#``.  SPEC item 1: an MQTT topic becomes a routing key by
swapping ``/`` and ``.``, so every topic round-trips; the swap is its own inverse.

One trie serves both syntaxes because MQTT filters are converted to AMQP patterns first.
Topics whose first level starts with ``$`` are not matched by a leading wildcard (MQTT
4.7.2), and that rule holds for every protocol so ``#`` never leaks ``$SYS`` traffic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

#: The exchange where every protocol's topics meet (SPEC item 1).
TOPIC_EXCHANGE = "amq.topic"

_SWAP = str.maketrans("./", "/.")
_FILTER_TO_PATTERN = str.maketrans({".": "/", "/": ".", "+": "*"})
_PATTERN_TO_FILTER = str.maketrans({".": "/", "/": ".", "*": "+"})

#: Number of routing keys whose match results are remembered between binding changes.
MATCH_CACHE_SIZE = 8192


def mqtt_to_key(topic: str) -> str:
    """MQTT topic ``a/b.c`` -> routing key ``a.b/c`` (``replace`` is several times faster
    than ``translate``, and topics rarely contain dots)."""
    return topic.translate(_SWAP) if "." in topic else topic.replace("/", ".")


def key_to_mqtt(key: str) -> str:
    """Routing key ``a.b/c`` -> MQTT topic ``a/b.c``."""
    return key.translate(_SWAP) if "/" in key else key.replace(".", "/")


def filter_to_pattern(topic_filter: str) -> str:
    """MQTT filter ``a/+/#`` -> AMQP binding pattern ``a.*.#``."""
    return topic_filter.translate(_FILTER_TO_PATTERN)


def pattern_to_filter(pattern: str) -> str:
    """AMQP binding pattern ``a.*.#`` -> MQTT filter ``a/+/#``."""
    return pattern.translate(_PATTERN_TO_FILTER)


def filter_matches(topic_filter: str, topic: str) -> bool:
    """Whether the MQTT filter matches the concrete MQTT topic."""
    return _words_match(topic_filter.split("/"), topic.split("/"), "+")


def pattern_matches(pattern: str, key: str) -> bool:
    """Whether the AMQP binding pattern matches the routing key."""
    return _words_match(pattern.split("."), key.split("."), "*")


def _words_match(pattern: list[str], words: list[str], one: str) -> bool:
    if words and words[0].startswith("$") and pattern and pattern[0] in (one, "#"):
        return False
    return _match_from(pattern, 0, words, 0, one)


def _match_from(pattern: list[str], p: int, words: list[str], w: int, one: str) -> bool:
    while p < len(pattern):
        part = pattern[p]
        if part == "#":
            if p == len(pattern) - 1:
                return True
            return any(_match_from(pattern, p + 1, words, i, one) for i in range(w, len(words) + 1))
        if w == len(words) or (part != one and part != words[w]):
            return False
        p += 1
        w += 1
    return w == len(words)


class _Node(Generic[T]):
    __slots__ = ("children", "star", "hash", "values")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.star: _Node[T] | None = None
        self.hash: _Node[T] | None = None
        self.values: dict[T, int] = {}

    def empty(self) -> bool:
        return not (self.children or self.star or self.hash or self.values)


class TopicTrie(Generic[T]):
    """Maps AMQP binding patterns to values; ``match`` returns the values of every pattern
    matching a routing key, each once.  Results are cached per key until bindings change,
    since telemetry publishes the same few keys over and over."""

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        #: match results per routing key, cleared on every change (read it for a fast path)
        self.cache: dict[str, tuple[T, ...]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, pattern: str, value: T) -> None:
        node = self._root
        for word in pattern.split("."):
            node = self._child(node, word)
        node.values[value] = node.values.get(value, 0) + 1
        self._count += 1
        self.cache.clear()

    def remove(self, pattern: str, value: T) -> bool:
        """Remove one (pattern, value) pair; returns whether it was present."""
        path = [self._root]
        words = pattern.split(".")
        for word in words:
            nxt = self._step(path[-1], word)
            if nxt is None:
                return False
            path.append(nxt)
        leaf = path[-1]
        count = leaf.values.get(value)
        if not count:
            return False
        if count == 1:
            del leaf.values[value]
        else:
            leaf.values[value] = count - 1
        self._count -= 1
        self.cache.clear()
        self._prune(path, words)
        return True

    def match(self, key: str) -> tuple[T, ...]:
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        found: dict[T, None] = {}
        words = key.split(".")
        self._visit(self._root, words, 0, found, bool(words[0]) and words[0][0] == "$")
        result = tuple(found)
        if len(self.cache) >= MATCH_CACHE_SIZE:
            self.cache.clear()
        self.cache[key] = result
        return result

    def values(self) -> Iterable[T]:
        stack = [self._root]
        while stack:
            node = stack.pop()
            yield from node.values
            stack.extend(node.children.values())
            if node.star:
                stack.append(node.star)
            if node.hash:
                stack.append(node.hash)

    def _visit(
        self, node: _Node[T], words: list[str], i: int, found: dict[T, None], dollar: bool
    ) -> None:
        n = len(words)
        hash_node = node.hash
        if hash_node is not None and not dollar:
            for j in range(i, n + 1):
                self._visit_after_hash(hash_node, words, j, found)
        if i == n:
            for value in node.values:
                found[value] = None
            return
        child = node.children.get(words[i])
        if child is not None:
            self._visit(child, words, i + 1, found, False)
        if node.star is not None and not dollar:
            self._visit(node.star, words, i + 1, found, False)

    def _visit_after_hash(
        self, node: _Node[T], words: list[str], j: int, found: dict[T, None]
    ) -> None:
        """``#`` consumed words up to j: continue with what follows it in the pattern."""
        if j == len(words):
            for value in node.values:
                found[value] = None
            if node.hash is not None:
                self._visit_after_hash(node.hash, words, j, found)
            return
        child = node.children.get(words[j])
        if child is not None:
            self._visit(child, words, j + 1, found, False)
        if node.star is not None:
            self._visit(node.star, words, j + 1, found, False)
        if node.hash is not None:
            self._visit_after_hash(node.hash, words, j, found)

    @staticmethod
    def _child(node: _Node[T], word: str) -> _Node[T]:
        if word == "*":
            if node.star is None:
                node.star = _Node()
            return node.star
        if word == "#":
            if node.hash is None:
                node.hash = _Node()
            return node.hash
        child = node.children.get(word)
        if child is None:
            child = node.children[word] = _Node()
        return child

    @staticmethod
    def _step(node: _Node[T], word: str) -> _Node[T] | None:
        if word == "*":
            return node.star
        if word == "#":
            return node.hash
        return node.children.get(word)

    @staticmethod
    def _prune(path: list[_Node[T]], words: list[str]) -> None:
        for depth in range(len(words), 0, -1):
            node = path[depth]
            if not node.empty():
                return
            parent, word = path[depth - 1], words[depth - 1]
            if word == "*":
                parent.star = None
            elif word == "#":
                parent.hash = None
            else:
                del parent.children[word]
