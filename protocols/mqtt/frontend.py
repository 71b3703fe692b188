"""Broker-wide MQTT state: the sessions by client id, shared by every MQTT connection.

The runtime creates one ``MQTTFrontEnd`` and hands each accepted stream to
``protocols.mqtt.server.serve`` with it; the WebSocket front end will do the same.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from broker.log import event
from protocols.mqtt.session import Session

if TYPE_CHECKING:
    from broker.config import MqttConfig
    from broker.core import Broker

log = logging.getLogger("broker.mqtt")

SESSION_PREFIX = "mqtt:"


class MQTTFrontEnd:
    def __init__(self, broker: Broker, settings: MqttConfig) -> None:
        self.broker = broker
        self.settings = settings
        self.vhost = broker.vhost()
        self.sessions: dict[str, Session] = {}
        #: while the adapter handles a batch of packets: the outputs to flush after it
        self.output_batch: list | None = None
        self._restore()

    def open_session(self, client_id: str, clean: bool, durable: bool) -> tuple[Session, bool]:
        """The session for a CONNECT: a fresh one for clean session / clean start, else the
        existing one if any.  ``durable``: it outlives the connection (MQTT 3.1.1 clean
        session 0, MQTT 5 session expiry interval > 0).  Returns (session, present)."""
        existing = self.sessions.get(client_id)
        if existing is not None and (clean or not existing.durable):
            existing.destroy()
            del self.sessions[client_id]
            existing = None
        if existing is not None:
            return existing, True
        session = self._new_session(client_id, durable=durable)
        self.sessions[client_id] = session
        return session, False

    def close_session(self, session: Session) -> None:
        """A clean session's connection ended: the session goes with it."""
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        session.destroy()

    def _new_session(self, client_id: str, durable: bool, blob: bytes | None = None) -> Session:
        """A session, new or (with ``blob``) restored from its stored record."""
        key = SESSION_PREFIX + client_id

        def persist(blob: bytes | None) -> None:
            self.broker.save_session(key, blob)

        session = Session(
            self.vhost,
            client_id,
            durable=durable,
            max_inflight=self.settings.max_inflight,
            max_queued=self.settings.max_queued,
            persist=persist,
        )
        if blob is not None:
            session.restore(blob)
        elif durable:
            persist(session.record())
        return session

    def _restore(self) -> None:
        """Bring back persistent sessions (their queues, if they had subscriptions, were
        restored by the core)."""
        for key, blob in list(self.broker.sessions.items()):
            if not key.startswith(SESSION_PREFIX):
                continue
            client_id = key[len(SESSION_PREFIX) :]
            self.sessions[client_id] = self._new_session(client_id, durable=True, blob=blob)
        if self.sessions:
            event(log, logging.INFO, "mqtt sessions restored", count=len(self.sessions))
