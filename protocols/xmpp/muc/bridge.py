"""Rooms are topics (SPEC "Where protocols meet", item 5): room ``<room>@conference.<domain>``
is MQTT topic ``muc/<room>``, routing key ``muc.<room>`` on ``amq.topic``, both ways.

Out of a room: each groupchat body an occupant sends is published there as UTF-8 with
header ``nick`` (an MQTT 5 user property, an AMQP header), by the occupant's user, under
the same permissions and topic ACLs as any publish of that user (a refused publish stays
in the room only).  Into a room: the front end consumes a private queue bound to
``amq.topic`` with ``muc.*``; a UTF-8 body published on ``muc/<room>`` by any other
protocol appears in the room as groupchat from the nick equal to the publisher's user
name.  Each message crosses once: what the bridge published carries the bridge as its
``origin`` and is not brought back.

A publish for a room that does not exist is dropped: a room comes into being when its
first occupant joins, and a temporary room with no one in it would be gone at once, so
there is no one it could reach.  Persistent rooms exist while empty, and log the message
for history and their archive.  Bodies that are not UTF-8 text XML can carry are dropped
with a log line.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from broker import auth
from broker.core import DEFAULT_VHOST
from broker.errors import BrokerError
from broker.log import event
from broker.message import Message, Properties
from broker.queues import Queue
from broker.topics import TOPIC_EXCHANGE, key_to_mqtt, mqtt_to_key
from protocols.xmpp.stanza import NOT_XML

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd
    from protocols.xmpp.muc.room import Occupant, Room
    from protocols.xmpp.muc.service import MUCService

log = logging.getLogger("broker.xmpp")

TOPIC_PREFIX = "muc/"
#: every room's topic, as a binding pattern
PATTERN = "muc.*"
#: nick of a bridged message whose publisher has no user name
ANONYMOUS = "anonymous"


def topic_of(room: str) -> str:
    return f"{TOPIC_PREFIX}{room}"


class RoomBridge:
    """The front end's consumer of room topics, and the publisher of room messages."""

    def __init__(self, front: XMPPFrontEnd, service: MUCService) -> None:
        self.front = front
        self.service = service
        self.vhost = front.broker.vhost(DEFAULT_VHOST)
        #: (user database version, user) -> whether the user may publish on amq.topic
        self._may_write: dict[str, bool] = {}
        self._users_version = -1
        self.queue: Queue | None = None
        try:
            queue = self.vhost.declare_queue(
                f"xmpp.muc.{uuid.uuid4().hex}", durable=False, exclusive_owner=self
            )
            self.vhost.bind(queue, TOPIC_EXCHANGE, PATTERN, None)
        except BrokerError as exc:
            event(log, logging.WARNING, "muc bridge unavailable", error=str(exc))
            return
        self.queue = queue
        queue.add_consumer(self)

    # --- out of a room -----------------------------------------------------------------

    def publish(self, room: Room, occupant: Occupant, body: str) -> None:
        user = occupant.jid.local
        topic = topic_of(room.jid.local)
        if not self._allowed(user, topic):
            return
        message = Message(
            TOPIC_EXCHANGE,
            mqtt_to_key(topic),
            body.encode(),
            Properties(headers={"nick": occupant.nick}),
            origin=self,
            publisher=user,
            topic=topic,
        )
        try:
            self.vhost.publish(message)
        except BrokerError as exc:
            event(log, logging.INFO, "muc bridge publish refused", topic=topic, error=str(exc))

    def _allowed(self, user: str, topic: str) -> bool:
        """The user's write permission on amq.topic and the topic ACL, as for any
        publish (verdicts on the permission cached until the user database changes)."""
        users = self.front.broker.users
        if users.version != self._users_version:
            self._may_write.clear()
            self._users_version = users.version
        may = self._may_write.get(user)
        if may is None:
            record = users.get(user)
            may = record is not None and auth.can(record, DEFAULT_VHOST, "write", TOPIC_EXCHANGE)
            self._may_write[user] = may
        acl = self.front.broker.acl
        return may and (not acl or acl.check(user, "", topic, "publish"))

    # --- into a room: the queue consumer protocol --------------------------------------

    def ready(self) -> bool:
        return True

    def deliver(self, queue: Queue, message: Message, seq: int, redelivered: bool) -> bool:
        if message.origin is not self:
            self.bring_in(message)
        return False

    def queue_deleted(self, queue: Queue) -> None:
        self.queue = None
        event(log, logging.WARNING, "muc bridge queue deleted", queue=queue.name)

    def bring_in(self, message: Message) -> None:
        topic = message.topic or key_to_mqtt(message.routing_key)
        name = topic[len(TOPIC_PREFIX) :].lower()
        room = self.service.rooms.get(name)
        if room is None or room.locked:
            event(log, logging.DEBUG, "muc bridge: no such room", topic=topic)
            return
        try:
            body = message.body.decode()
        except UnicodeDecodeError:
            body = None
        if body is None or NOT_XML.search(body):
            event(log, logging.INFO, "muc bridge: payload is not XML text", topic=topic)
            return
        room.say(message.publisher or ANONYMOUS, body)
        self.front.counts.messages_out += len(room.occupants)
