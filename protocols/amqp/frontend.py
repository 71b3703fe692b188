"""Broker-wide AMQP state shared by every AMQP connection.

The runtime creates one ``AMQPFrontEnd`` and hands each accepted stream to
``protocols.amqp.server.serve`` with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.core import Broker
    from protocols.amqp.connection import AMQPConnection

#: Seconds between heartbeats the server proposes in connection.tune (RabbitMQ's default).
HEARTBEAT = 60


class AMQPFrontEnd:
    def __init__(self, broker: Broker, frame_max: int, heartbeat: int = HEARTBEAT) -> None:
        self.broker = broker
        self.frame_max = frame_max
        self.heartbeat = heartbeat
        #: every open connection, and what to call when the last one has gone (shutdown)
        self.connections: set[AMQPConnection] = set()
        self.on_idle: Callable[[], None] | None = None
        broker.alarms.subscribe(self._alarms_changed)

    @property
    def blocked_reason(self) -> str | None:
        """Why publishing is blocked (RabbitMQ's wording), or None."""
        active = self.broker.alarms.active
        if not active:
            return None
        return "low on " + " and ".join(sorted(active))

    def _alarms_changed(self) -> None:
        reason = self.blocked_reason
        for conn in list(self.connections):
            conn.alarms_changed(reason)
