"""Broker-wide counters, read by $SYS publishing and (later) metrics."""

from __future__ import annotations

from collections import Counter


class Stats:
    """Plain integer counters; front ends bump them on their hot paths, so no locking and
    no per-message allocation."""

    __slots__ = (
        "messages_received",
        "messages_sent",
        "publish_received",
        "publish_sent",
        "publish_dropped",
        "bytes_received",
        "bytes_sent",
        "clients_total",
        "clients_connected",
        "clients_maximum",
        "connections_by_protocol",
    )

    def __init__(self) -> None:
        self.messages_received = 0
        self.messages_sent = 0
        self.publish_received = 0
        self.publish_sent = 0
        self.publish_dropped = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.clients_total = 0
        self.clients_connected = 0
        self.clients_maximum = 0
        self.connections_by_protocol: Counter[str] = Counter()

    def connected(self, protocol: str) -> None:
        self.clients_connected += 1
        self.clients_total += 1
        self.clients_maximum = max(self.clients_maximum, self.clients_connected)
        self.connections_by_protocol[protocol] += 1

    def disconnected(self, protocol: str) -> None:
        self.clients_connected -= 1
        self.connections_by_protocol[protocol] -= 1
