"""MQTT 5 topic aliases the broker assigns towards a client (3.3.2.3.4).

A client that sends Topic Alias Maximum > 0 in CONNECT lets the broker replace a topic it
has already sent on this connection by a two-byte alias.  Aliases are handed out in order
until the client's maximum is reached; later topics go out in full.  The mapping lives and
dies with the network connection, as the spec requires.
"""

from __future__ import annotations


class OutboundAliases:
    __slots__ = ("maximum", "assigned")

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.assigned: dict[str, int] = {}

    def alias(self, topic: str) -> tuple[int, bool]:
        """The alias for ``topic`` (0 for none) and whether the client already knows it."""
        alias = self.assigned.get(topic)
        if alias is not None:
            return alias, True
        if len(self.assigned) >= self.maximum:
            return 0, False
        alias = self.assigned[topic] = len(self.assigned) + 1
        return alias, False

    def forget(self, topic: str) -> None:
        """The packet that would have told the client ``topic``'s alias was not sent."""
        del self.assigned[topic]
