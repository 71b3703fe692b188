"""Observers of retained values: every change is reported with the value it replaced, so
a front end can mirror retained values (XMPP pubsub items are retained values)."""

from __future__ import annotations

from broker.message import Message
from broker.retained import RetainedStore
from broker.store.memory import MemoryStore


def _message(body: bytes) -> Message:
    return Message("amq.topic", "a.b", body, topic="a/b")


def test_observers_see_each_change_with_the_previous_value() -> None:
    retained = RetainedStore(MemoryStore())
    changes: list[tuple[str, bytes | None, bytes | None]] = []
    retained.on_change.append(
        lambda topic, new, old: changes.append((topic, new and new.body, old and old.body))
    )
    retained.set("a/b", _message(b"one"))
    retained.set("a/b", _message(b"two"))
    retained.set("a/b", _message(b""))  # an empty body clears
    retained.set("a/b", None)  # nothing left to clear: no change
    retained.set("x/y", None)
    assert changes == [("a/b", b"one", None), ("a/b", b"two", b"one"), ("a/b", None, b"two")]
    assert len(retained) == 0
