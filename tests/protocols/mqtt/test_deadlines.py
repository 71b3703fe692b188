"""Keyed deadlines: ordering, replacement, cancellation."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocols.mqtt.deadlines import Deadlines


def test_due_in_deadline_order_and_only_once() -> None:
    deadlines = Deadlines()
    fired: list[str] = []
    for key, when in [("b", 2.0), ("a", 1.0), ("c", 3.0)]:
        deadlines.schedule(key, when, lambda key=key: fired.append(key))
    assert deadlines.next_at() == 1.0
    for action in deadlines.due(2.5):
        action()
    assert fired == ["a", "b"]
    assert deadlines.due(2.5) == []
    assert deadlines.next_at() == 3.0 and len(deadlines) == 1


def test_rescheduling_replaces_and_cancel_returns_the_action() -> None:
    deadlines = Deadlines()
    deadlines.schedule("k", 1.0, lambda: None)
    deadlines.schedule("k", 5.0, lambda: None)
    assert deadlines.due(2.0) == [] and deadlines.next_at() == 5.0
    assert deadlines.cancel("k") is not None
    assert deadlines.cancel("k") is None
    assert deadlines.next_at() is None and deadlines.due(10.0) == []


@given(st.lists(st.tuples(st.integers(0, 5), st.floats(0, 100), st.booleans())))
def test_each_key_fires_at_its_last_deadline_unless_cancelled(
    operations: list[tuple[int, float, bool]],
) -> None:
    deadlines = Deadlines()
    expected: dict[int, float] = {}
    for key, when, cancel in operations:
        if cancel:
            deadlines.cancel(key)
            expected.pop(key, None)
        else:
            deadlines.schedule(key, when, lambda key=key, when=when: (key, when))
            expected[key] = when
    fired = [action() for action in deadlines.due(100.0)]
    assert sorted(fired) == sorted(expected.items())
    assert [when for _key, when in fired] == sorted(when for _key, when in fired)
