"""Synchronisation points for the XMPP storage tests, all on events, none on sleeps.

`round_trip(client)`: a ping answered by the server, which handles a stream's stanzas in
order, so everything the client sent before has been handled.  `wait_until_stored(broker)`:
a persistent publish to a durable queue, confirmed only after the store's commit, which
covers every write made before it (commits happen in order), so what the broker has
handled by then survives `kill -9`.
"""

from __future__ import annotations

import pika
from pika.spec import BasicProperties

from .amqp import url
from .brokers import BrokerProcess
from .xmpp import DOMAIN, USERS, XmppClient

SYNC_QUEUE = "e2e.xmpp.sync"


def round_trip(client: XmppClient) -> None:
    client.call(client.client.plugin["xep_0199"].ping, DOMAIN)


def publish(broker: BrokerProcess, exchange: str, key: str, body: bytes, user: str) -> None:
    """A persistent publish as ``user``, returning once the broker confirmed it."""
    with pika.BlockingConnection(pika.URLParameters(url(broker, (user, USERS[user])))) as conn:
        channel = conn.channel()
        channel.confirm_delivery()
        if exchange == "":
            channel.queue_declare(key, durable=True)
        channel.basic_publish(exchange, key, body, BasicProperties(delivery_mode=2))


def wait_until_stored(broker: BrokerProcess) -> None:
    publish(broker, "", SYNC_QUEUE, b"sync", "alice")
