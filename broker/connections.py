"""Every client connection of every protocol in one registry, so the management API can
list them and close one.

Front ends register each connection when it starts with two callables: ``describe``
(who it is now: user, vhost, client id, which change as it authenticates) and ``close``
(ask it to end, in its protocol's own words: MQTT DISCONNECT, AMQP connection.close 320,
an XMPP stream error).  The registry never touches a socket.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class ClientConnection:
    #: unique while the connection lives: "<peer> -> <protocol>", as RabbitMQ names them
    name: str
    protocol: str
    peer: str
    describe: Callable[[], dict[str, Any]]
    close: Callable[[str], None]
    connected_at: float = field(default_factory=time.time)


class ConnectionRegistry:
    def __init__(self) -> None:
        self._by_name: dict[str, ClientConnection] = {}

    def register(
        self,
        protocol: str,
        peer: str,
        describe: Callable[[], dict[str, Any]],
        close: Callable[[str], None],
    ) -> ClientConnection:
        name = base = f"{peer} -> {protocol}"
        count = 1
        while name in self._by_name:
            count += 1
            name = f"{base} #{count}"
        connection = ClientConnection(name, protocol, peer, describe, close)
        self._by_name[name] = connection
        return connection

    def unregister(self, connection: ClientConnection) -> None:
        if self._by_name.get(connection.name) is connection:
            del self._by_name[connection.name]

    def get(self, name: str) -> ClientConnection | None:
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[ClientConnection]:
        return iter(list(self._by_name.values()))

    def __len__(self) -> int:
        return len(self._by_name)

    def by_protocol(self) -> Counter[str]:
        return Counter(c.protocol for c in self._by_name.values())
