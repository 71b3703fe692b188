"""Broker-wide counters, read by $SYS publishing and /metrics."""

from __future__ import annotations

from collections import Counter


class ProtocolCounts:
    """Messages one front end took in from publishers and handed out to subscribers.

    A front end keeps a reference and bumps the plain ints (per batch where it can), so
    counting costs an attribute increment and no dict lookup."""

    __slots__ = ("messages_in", "messages_out")

    def __init__(self) -> None:
        self.messages_in = 0
        self.messages_out = 0


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
        "protocols",
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
        #: message counts of the front ends other than MQTT (whose figures are the $SYS
        #: publish counters above)
        self.protocols: dict[str, ProtocolCounts] = {}

    def protocol(self, name: str) -> ProtocolCounts:
        """The message counts a front end bumps; created on first use."""
        counts = self.protocols.get(name)
        if counts is None:
            counts = self.protocols[name] = ProtocolCounts()
        return counts

    def messages_by_protocol(self) -> dict[str, tuple[int, int]]:
        """(messages in, messages out) per protocol, MQTT included."""
        counts = {"mqtt": (self.publish_received, self.publish_sent)}
        for name, each in self.protocols.items():
            counts[name] = (each.messages_in, each.messages_out)
        return counts

    def connected(self, protocol: str) -> None:
        self.clients_connected += 1
        self.clients_total += 1
        self.clients_maximum = max(self.clients_maximum, self.clients_connected)
        self.connections_by_protocol[protocol] += 1

    def disconnected(self, protocol: str) -> None:
        self.clients_connected -= 1
        self.connections_by_protocol[protocol] -= 1
