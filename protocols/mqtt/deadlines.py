"""Keyed one-shot deadlines, sans-I/O: MQTT 5 session expiry and delayed wills.

Scheduling a key again replaces its deadline; cancelled or replaced entries stay in the
heap and are skipped when they come up, so both operations are O(log n) at most.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable

Action = Callable[[], None]


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._entries: dict[Hashable, tuple[float, int, Action]] = {}
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def schedule(self, key: Hashable, when: float, action: Action) -> None:
        seq = next(self._order)
        self._entries[key] = (when, seq, action)
        heapq.heappush(self._heap, (when, seq, key))

    def cancel(self, key: Hashable) -> Action | None:
        """Forget ``key``'s deadline; returns its action if one was pending."""
        entry = self._entries.pop(key, None)
        return None if entry is None else entry[2]

    def due(self, now: float) -> list[Action]:
        """Remove and return the actions whose deadline has come, earliest first."""
        actions = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, seq, key = heapq.heappop(heap)
            entry = self._entries.get(key)
            if entry is not None and entry[1] == seq:
                del self._entries[key]
                actions.append(entry[2])
        return actions

    def next_at(self) -> float | None:
        """The earliest pending deadline, if any."""
        heap = self._heap
        while heap:
            when, seq, key = heap[0]
            entry = self._entries.get(key)
            if entry is not None and entry[1] == seq:
                return when
            heapq.heappop(heap)
        return None
