"""The ``xmpp`` exchange (SPEC "Where protocols meet", item 6): services in any protocol
send chat messages to XMPP users by publishing with a bare or full JID as routing key.

Design: ``xmpp`` is a durable direct exchange whose alternate exchange, the internal
fanout ``xmpp.inbox``, takes every message that no binding claims, i.e. every message (any
JID, no binding per user needed).  The fanout feeds the durable queue ``xmpp.inbox``,
which the front end consumes: each message is settled as soon as it is handed to RFC 6121
delivery (to the user's resources, or into offline storage), so persistent messages are
confirmed to their publisher only once the stored copy is as durable as the queue entry
was.  All three are declared at start in vhost "/"; declaring again after a restart finds
them as they were.

The user receives ``<message type='chat'>`` whose body is the UTF-8 payload, from the
publishing user's bare JID (the domain for a publisher without a name).  A payload that
is not UTF-8 text XML can carry, or a key that names no local account, is dropped with one
log line.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

from broker.core import DEFAULT_VHOST
from broker.errors import BrokerError
from broker.log import event
from broker.message import Message
from broker.queues import Queue
from protocols.xmpp.jid import InvalidJID, parse_jid
from protocols.xmpp.stanza import element, serialize
from protocols.xmpp.stream import NS_CLIENT

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd

log = logging.getLogger("broker.xmpp")

EXCHANGE = "xmpp"
#: the alternate exchange of ``xmpp`` and the queue it fills (same name)
INBOX = "xmpp.inbox"


class ExchangeBridge:
    """The front end's consumer of ``xmpp.inbox``."""

    def __init__(self, front: XMPPFrontEnd) -> None:
        self.front = front
        vhost = front.broker.vhost(DEFAULT_VHOST)
        try:
            vhost.declare_exchange(INBOX, "fanout", internal=True)
            vhost.declare_exchange(EXCHANGE, "direct", arguments={"alternate-exchange": INBOX})
            queue = vhost.declare_queue(INBOX)
            vhost.bind(queue, INBOX, "", None)
        except BrokerError as exc:
            event(log, logging.WARNING, "xmpp exchange unavailable", error=str(exc))
            return
        queue.add_consumer(self)

    # --- the queue consumer protocol -------------------------------------------------

    def ready(self) -> bool:
        return True

    def deliver(self, queue: Queue, message: Message, seq: int, redelivered: bool) -> bool:
        self.deliver_chat(message)
        return False

    def queue_deleted(self, queue: Queue) -> None:
        event(log, logging.WARNING, "xmpp exchange queue deleted", queue=queue.name)

    # --- delivery --------------------------------------------------------------------

    def deliver_chat(self, message: Message) -> None:
        front = self.front
        try:
            to = parse_jid(message.routing_key)
        except InvalidJID:
            to = None
        if to is None or not to.local or not front.user_exists(to):
            event(log, logging.INFO, "xmpp exchange: no such user", key=message.routing_key)
            return
        chat = element("message", type="chat", to=str(to), id=secrets.token_hex(8))
        chat.set("from", self._sender(message.publisher))
        body = chat.makeelement(f"{{{NS_CLIENT}}}body")
        try:
            body.text = message.body.decode()
        except ValueError:  # not UTF-8, or characters XML cannot carry
            event(log, logging.INFO, "xmpp exchange: payload is not XML text", key=str(to))
            return
        chat.append(body)
        front.deliver_message(to, chat, serialize(chat))
        front.end_of_input()

    def _sender(self, publisher: str | None) -> str:
        """The publishing user's bare JID; the domain when there is none to give."""
        domain = self.front.domain
        if publisher:
            try:
                return str(parse_jid(f"{publisher}@{domain}"))
            except InvalidJID:
                pass
        return domain
