"""The topic trie against a brute-force matcher, and the MQTT <-> AMQP mapping."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.topics import (
    TopicTrie,
    filter_matches,
    filter_to_pattern,
    key_to_mqtt,
    mqtt_to_key,
    pattern_matches,
    pattern_to_filter,
)

TOPIC_LEVELS = st.lists(st.sampled_from(["a", "b", "c", "", "$SYS"]), min_size=1, max_size=5)
PATTERN_LEVELS = st.lists(
    st.sampled_from(["a", "b", "c", "", "*", "#", "$SYS"]), min_size=1, max_size=5
)


def brute(pattern: str, key: str) -> bool:
    """Exhaustive recursive matcher: the plainest possible definition."""
    words, parts = key.split("."), pattern.split(".")
    if words[0].startswith("$") and parts[0] in ("*", "#"):
        return False

    def go(p: int, w: int) -> bool:
        if p == len(parts):
            return w == len(words)
        if parts[p] == "#":
            return any(go(p + 1, i) for i in range(w, len(words) + 1))
        if w == len(words):
            return False
        return (parts[p] == "*" or parts[p] == words[w]) and go(p + 1, w + 1)

    return go(0, 0)


@settings(max_examples=300, deadline=None)
@given(st.lists(PATTERN_LEVELS, min_size=1, max_size=8), st.lists(TOPIC_LEVELS, max_size=10))
def test_trie_matches_brute_force(patterns: list[list[str]], keys: list[list[str]]) -> None:
    trie: TopicTrie[int] = TopicTrie()
    joined = [".".join(p) for p in patterns]
    for i, pattern in enumerate(joined):
        trie.add(pattern, i)
    for key_levels in keys:
        key = ".".join(key_levels)
        expected = {i for i, p in enumerate(joined) if brute(p, key)}
        assert set(trie.match(key)) == expected
        assert all(pattern_matches(p, key) == brute(p, key) for p in joined)


@settings(max_examples=200, deadline=None)
@given(st.lists(PATTERN_LEVELS, min_size=1, max_size=6), TOPIC_LEVELS)
def test_trie_remove_restores_matches(patterns: list[list[str]], key_levels: list[str]) -> None:
    trie: TopicTrie[int] = TopicTrie()
    joined = [".".join(p) for p in patterns]
    for i, pattern in enumerate(joined):
        trie.add(pattern, i)
    for i, pattern in enumerate(joined[::2]):
        assert trie.remove(pattern, 2 * i)
    key = ".".join(key_levels)
    expected = {i for i, p in enumerate(joined) if i % 2 and brute(p, key)}
    assert set(trie.match(key)) == expected
    assert len(trie) == len(joined) // 2


def test_reference_examples() -> None:
    for pattern, key, expected in [
        ("a.#", "a", True),
        ("a.#", "a.b.c", True),
        ("#", "a.b", True),
        ("#", "$SYS.x", False),
        ("*.x", "$SYS.x", False),
        ("$SYS.#", "$SYS.x", True),
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.c", False),
        ("a.#.c", "a.c", True),
        ("a.#.c", "a.b.b.c", True),
    ]:
        assert brute(pattern, key) is expected, (pattern, key)
        trie: TopicTrie[str] = TopicTrie()
        trie.add(pattern, "v")
        assert (trie.match(key) == ("v",)) is expected, (pattern, key)


@given(st.text(alphabet="ab./c", max_size=20))
def test_topic_mapping_round_trips(topic: str) -> None:
    assert key_to_mqtt(mqtt_to_key(topic)) == topic


def test_mapping_examples() -> None:
    assert mqtt_to_key("sensors/room1/temp") == "sensors.room1.temp"
    assert mqtt_to_key("a/b.c") == "a.b/c"
    assert filter_to_pattern("sensors/+/temp") == "sensors.*.temp"
    assert filter_to_pattern("sensors/#") == "sensors.#"
    assert pattern_to_filter("a.*.#") == "a/+/#"


def test_mqtt_filter_matching() -> None:
    assert filter_matches("a/+/c", "a/b/c")
    assert filter_matches("a/#", "a")
    assert filter_matches("+/+", "/x")
    assert not filter_matches("#", "$SYS/broker/uptime")
    assert not filter_matches("+/broker/uptime", "$SYS/broker/uptime")
    assert filter_matches("$SYS/#", "$SYS/broker/uptime")
