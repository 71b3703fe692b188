"""Fixtures for core unit tests: a vhost over an in-memory store, and a scriptable consumer."""

from __future__ import annotations

import pytest
import trio

from broker.message import Message, Properties
from broker.queues import Entry, Queue
from broker.store.memory import MemoryStore
from broker.vhost import VHost


class RecordingConsumer:
    """Takes deliveries while it has credit; records them; acks nothing by itself."""

    def __init__(self, prefetch: int = 0, no_ack: bool = False) -> None:
        self.prefetch = prefetch
        self.no_ack = no_ack
        self.deliveries: list[Entry] = []
        self.unacked = 0
        self.cancelled = False

    def ready(self) -> bool:
        return not self.prefetch or self.unacked < self.prefetch

    def deliver(self, queue: Queue, message: Message, seq: int, redelivered: bool) -> bool:
        entry = Entry(message, seq, None)
        entry.redelivered = redelivered
        self.deliveries.append(entry)
        if self.no_ack:
            return False
        self.unacked += 1
        return True

    def queue_deleted(self, queue: Queue) -> None:
        self.cancelled = True

    def bodies(self) -> list[bytes]:
        return [e.message.body for e in self.deliveries]

    def ack(self, queue: Queue, entry: Entry) -> None:
        self.unacked -= 1
        queue.ack(entry.seq)
        queue.dispatch()


@pytest.fixture
def vhost() -> VHost:
    store = MemoryStore()
    trio.run(store.open)
    return VHost("/", store)


def message(exchange: str, key: str, body: bytes = b"x", **props: object) -> Message:
    return Message(exchange, key, body, Properties(**props))
