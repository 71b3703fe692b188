"""``$SYS/broker/...`` statistics, published as Mosquitto publishes them.

Retained messages on ``$SYS`` topics, refreshed every ``interval`` seconds; they route
through ``amq.topic`` like any publish, so AMQP and XMPP consumers can watch them too.
Leading wildcards never match ``$`` topics, so only explicit ``$SYS/...`` subscribers see
them.
"""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version

import trio

from broker.core import Broker
from broker.errors import BrokerError
from broker.message import Message
from broker.topics import mqtt_to_key


def broker_version() -> str:
    try:
        return version("broker")
    except PackageNotFoundError:
        return "0+unknown"


def snapshot(broker: Broker) -> dict[str, str]:
    """Topic -> text value, under ``$SYS/broker/``."""
    stats = broker.stats
    vhost = broker.vhost()
    subscriptions = len(vhost.exchanges["amq.topic"].bindings)
    values = {
        "version": f"broker version {broker_version()}",
        "uptime": f"{int(time.time() - broker.started)} seconds",
        "clients/connected": stats.clients_connected,
        "clients/active": stats.clients_connected,
        "clients/total": stats.clients_total,
        "clients/maximum": stats.clients_maximum,
        "messages/received": stats.messages_received,
        "messages/sent": stats.messages_sent,
        "publish/messages/received": stats.publish_received,
        "publish/messages/sent": stats.publish_sent,
        "publish/messages/dropped": stats.publish_dropped,
        "bytes/received": stats.bytes_received,
        "bytes/sent": stats.bytes_sent,
        "subscriptions/count": subscriptions,
        "retained messages/count": len(broker.retained),
        "store messages/count": sum(len(q) + len(q.unacked) for q in vhost.queues.values()),
    }
    return {f"$SYS/broker/{k}": str(v) for k, v in values.items()}


def publish_snapshot(broker: Broker) -> None:
    vhost = broker.vhost()
    for topic, text in snapshot(broker).items():
        message = Message("amq.topic", mqtt_to_key(topic), text.encode(), publisher="$SYS")
        broker.retained.set(topic, message)
        try:
            vhost.publish(message)
        except BrokerError:
            return


async def run(broker: Broker, interval: float) -> None:
    while True:
        publish_snapshot(broker)
        await trio.sleep(interval)
