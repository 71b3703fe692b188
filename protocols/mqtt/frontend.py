"""Broker-wide MQTT state: the sessions by client id, shared by every MQTT connection, and
the deadlines of offline sessions (MQTT 5 session expiry, delayed wills).

The runtime creates one ``MQTTFrontEnd``, runs ``protocols.mqtt.server.housekeeping`` for
it and hands each accepted stream to ``protocols.mqtt.server.serve`` with it; the WebSocket
front end will do the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from broker.log import event
from protocols.mqtt.deadlines import Deadlines
from protocols.mqtt.reasons import SERVER_SHUTTING_DOWN
from protocols.mqtt.session import Session

if TYPE_CHECKING:
    from broker.config import MqttConfig
    from broker.core import Broker
    from protocols.mqtt.connection import MQTTConnection

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
        #: monotonic seconds; the clock of session expiry and will delay
        self.clock: Callable[[], float] = time.monotonic
        self.deadlines = Deadlines()
        #: every live connection, and what to call when the last one has gone
        self.connections: set[MQTTConnection] = set()
        self.on_idle: Callable[[], None] | None = None
        self._restore()

    def open_session(self, client_id: str, clean: bool, expiry: int | None) -> tuple[Session, bool]:
        """The session for a CONNECT: a fresh one for clean session / clean start, else the
        existing one if any, whose pending will and expiry are cancelled.  ``expiry``:
        seconds it outlives the connection, 0 not at all, None for ever (MQTT 3.1.1 clean
        session 0).  Returns (session, present)."""
        existing = self.sessions.get(client_id)
        if existing is not None and (clean or not existing.durable):
            self.end_session(existing)
            existing = None
        if existing is not None:
            self.deadlines.cancel(("will", client_id))
            self.deadlines.cancel(("session", client_id))
            existing.pending_will = None
            existing.ends_at = None
            existing.set_expiry(expiry)
            return existing, True
        session = self._new_session(client_id, expiry)
        self.sessions[client_id] = session
        return session, False

    def session_detached(
        self, session: Session, will: Callable[[], None] | None, delay: int
    ) -> None:
        """The session's connection is gone; ``will`` publishes its will, due after
        ``delay`` seconds unless the session resumes first or ends sooner (MQTT 5
        3.1.3.2.2).  A session without expiry ends now; one with an interval ends then."""
        if not session.durable:
            if will is not None:
                will()
            self.end_session(session)
            return
        client_id = session.client_id
        now = self.clock()
        if will is not None:
            if delay:
                session.pending_will = will
                self.deadlines.schedule(("will", client_id), now + delay, _run_will(session))
            else:
                will()
        interval = session.expiry_interval
        if interval is not None:
            self.deadlines.schedule(
                ("session", client_id), now + interval, lambda: self.end_session(session)
            )
            session.ends_at = time.time() + interval
            session.save()

    def end_session(self, session: Session) -> None:
        """The session is over (connection closed with expiry 0, expiry passed, or a clean
        start replaced it): a will still waiting for its delay goes out now."""
        client_id = session.client_id
        self.deadlines.cancel(("will", client_id))
        if self.sessions.get(client_id) is session:
            del self.sessions[client_id]
            self.deadlines.cancel(("session", client_id))
        will = session.pending_will
        session.destroy()
        if will is not None:
            will()

    def expire(self) -> float | None:
        """Run the deadlines that have come; returns the next one (on ``clock``)."""
        for action in self.deadlines.due(self.clock()):
            try:
                action()
            except Exception:
                log.exception("mqtt deadline failed")
        return self.deadlines.next_at()

    def shut_down(self) -> None:
        """The broker is stopping: tell every MQTT 5 client so (DISCONNECT 0x8B) and end
        every connection's reading."""
        for conn in list(self.connections):
            conn.disconnect(SERVER_SHUTTING_DOWN)
            conn.on_kick()

    def connection_closed(self, conn: MQTTConnection) -> None:
        self.connections.discard(conn)
        if not self.connections and self.on_idle is not None:
            self.on_idle()

    def _new_session(
        self, client_id: str, expiry: int | None, blob: bytes | None = None
    ) -> Session:
        """A session, new or (with ``blob``) restored from its stored record."""
        persist = partial(self.broker.save_session, SESSION_PREFIX + client_id)
        session = Session(
            self.vhost,
            client_id,
            expiry_interval=expiry,
            max_inflight=self.settings.max_inflight,
            max_queued=self.settings.max_queued,
            persist=persist,
        )
        if blob is not None:
            session.restore(blob)
        else:
            session.save()
        return session

    def _restore(self) -> None:
        """Bring back persistent sessions (their queues, if they had subscriptions, were
        restored by the core); each one with an expiry interval counts down from its
        disconnect, or from now if it was connected when the broker stopped."""
        wall, now = time.time(), self.clock()
        for key, blob in list(self.broker.sessions.items()):
            if not key.startswith(SESSION_PREFIX):
                continue
            client_id = key[len(SESSION_PREFIX) :]
            session = self._new_session(client_id, None, blob)
            self.sessions[client_id] = session
            if session.expiry_interval is not None:
                ends_at = session.ends_at or wall + session.expiry_interval
                self.deadlines.schedule(
                    ("session", client_id),
                    now + ends_at - wall,
                    lambda session=session: self.end_session(session),
                )
        if self.sessions:
            event(log, logging.INFO, "mqtt sessions restored", count=len(self.sessions))


def _run_will(session: Session) -> Callable[[], None]:
    def run() -> None:
        will, session.pending_will = session.pending_will, None
        if will is not None:
            will()

    return run
