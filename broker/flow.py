"""Publisher flow control: publishers pause while a consumer is working off a backlog.

One read from a fast publisher can route a thousand messages; with many publishers the
consumers' writer tasks would get a turn only after every publisher had routed a chunk, and
queues would overflow and drop.  So a sink (a connection with a large unsent outbox, or a
queue with many ready messages and an attached consumer) reports itself *backlogged*, and
publishers wait before routing their next chunk until it has *drained*.

A sink that does not drain within ``SLOW_AFTER`` is a slow consumer: it is no longer waited
for (until it drains once), so it can never stall publishers; its own limits (queue length,
output buffer) decide what happens to its messages.
"""

from __future__ import annotations

import trio

#: How long publishers wait for one backlogged sink before calling it slow.
SLOW_AFTER = 0.05


class FlowControl:
    def __init__(self) -> None:
        self._waiting: dict[object, trio.Event] = {}
        self._slow: set[object] = set()

    @property
    def backlogged(self) -> bool:
        """Whether publishers should call ``wait`` before routing more."""
        return bool(self._waiting)

    def backlog(self, sink: object) -> None:
        """A sink has more than it can take at once."""
        if sink not in self._waiting and sink not in self._slow:
            self._waiting[sink] = trio.Event()

    def drained(self, sink: object) -> None:
        """A sink caught up; publishers may go on."""
        self._slow.discard(sink)
        event = self._waiting.pop(sink, None)
        if event is not None:
            event.set()

    def forget(self, sink: object) -> None:
        """A sink went away (connection closed, queue deleted)."""
        self.drained(sink)
        self._slow.discard(sink)

    async def wait(self) -> None:
        """Wait until no sink is backlogged, giving each at most ``SLOW_AFTER``."""
        while self._waiting:
            sink, event = next(iter(self._waiting.items()))
            with trio.move_on_after(SLOW_AFTER):
                await event.wait()
            if not event.is_set() and self._waiting.get(sink) is event:
                del self._waiting[sink]
                self._slow.add(sink)
                event.set()
