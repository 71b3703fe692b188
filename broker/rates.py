"""Message rates for the management API, from counters the queues keep anyway.

Every queue counts what it took in (``published``) and handed out (``delivered``); every
subscriber of every protocol is a queue, so these two cover the whole broker.  The core's
housekeeping samples them once a second; a rate is the change over the last few samples.
Totals survive deleted queues because they add up each sample's increase.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.queues import Queue
    from broker.vhost import VHost

#: Samples a rate spans (one a second).
WINDOW = 5


class Counted:
    """Two counters over time: their latest values and their per-second rates."""

    __slots__ = ("_samples",)

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int, int]] = deque(maxlen=WINDOW + 1)

    def add(self, now: float, published: int, delivered: int) -> None:
        self._samples.append((now, published, delivered))

    def last(self) -> tuple[int, int]:
        """The counters at the latest sample ((0, 0) before any)."""
        if not self._samples:
            return 0, 0
        _, published, delivered = self._samples[-1]
        return published, delivered

    def rates(self) -> tuple[float, float]:
        """(published per second, delivered per second) over the window."""
        if len(self._samples) < 2:
            return 0.0, 0.0
        (t0, p0, d0), (t1, p1, d1) = self._samples[0], self._samples[-1]
        span = t1 - t0
        return ((p1 - p0) / span, (d1 - d0) / span) if span > 0 else (0.0, 0.0)


class Rates:
    def __init__(self, vhosts: Mapping[str, VHost]) -> None:
        self._vhosts = vhosts
        #: id(queue) -> (the queue, its samples); the queue is kept to tell a new one apart
        self._queues: dict[int, tuple[Queue, Counted]] = {}
        self.published = 0
        self.delivered = 0
        self.overall = Counted()

    def sample(self, now: float) -> None:
        """Record every queue's counters (housekeeping, once a second)."""
        seen: dict[int, tuple[Queue, Counted]] = {}
        for vhost in list(self._vhosts.values()):
            for queue in vhost.queues.values():
                known = self._queues.get(id(queue))
                counted = Counted() if known is None or known[0] is not queue else known[1]
                published, delivered = counted.last()
                self.published += queue.published - published
                self.delivered += queue.delivered - delivered
                counted.add(now, queue.published, queue.delivered)
                seen[id(queue)] = (queue, counted)
        self._queues = seen
        self.overall.add(now, self.published, self.delivered)

    def of_queue(self, queue: Queue) -> tuple[float, float]:
        """A queue's (published, delivered) per second; zero until sampled twice."""
        known = self._queues.get(id(queue))
        if known is None or known[0] is not queue:
            return 0.0, 0.0
        return known[1].rates()
