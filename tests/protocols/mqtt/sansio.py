"""A driver for the sans-I/O MQTT connection in tests: bytes in, decoded packets out."""

from __future__ import annotations

import trio

from broker.acl import TopicACL
from broker.auth import UserDB
from broker.config import AclRule, MqttConfig
from broker.core import Broker
from broker.store.memory import MemoryStore
from protocols.mqtt import codec
from protocols.mqtt.connection import MQTTConnection
from protocols.mqtt.frontend import MQTTFrontEnd


def new_front(**settings: object) -> MQTTFrontEnd:
    """A front end over an in-memory core: users ``reader`` (may only read) and ``writer``
    (may only write), password ``pw``; topics under ``secret/`` denied by the ACL."""
    store = MemoryStore()
    trio.run(store.open)
    users = UserDB()
    users.ensure_default_users()
    users.add("reader", "pw")
    users.set_permissions("reader", "/", "", "", ".*")
    users.add("writer", "pw")
    users.set_permissions("writer", "/", "", ".*", "")
    acl = TopicACL([AclRule(topic="secret/#", allow=False)])
    return MQTTFrontEnd(Broker(store, users, acl), MqttConfig(**settings))


class Client:
    """Drives one MQTTConnection and decodes what it sends back."""

    def __init__(self, front: MQTTFrontEnd) -> None:
        self.conn = MQTTConnection(front, peer="test", peer_loopback=True)
        self.decoder = codec.Decoder()
        self.retained: list = []

    def send(self, *packets: object) -> list:
        self.conn.receive(b"".join(codec.encode(p) for p in packets))
        return self.received()

    def received(self) -> list:
        return self.decoder.feed(self.conn.take_output())

    def connect(self, client_id: str, user: str | None = None, clean: bool = True) -> codec.Connack:
        password = b"pw" if user else None
        [connack] = self.send(codec.Connect("MQTT", 4, clean, 60, client_id, user, password))
        return connack

    def subscribe(self, *filters: tuple[str, int]) -> list[int]:
        topics = [(f, codec.SubscriptionOptions(q)) for f, q in filters]
        suback, *self.retained = self.send(codec.Subscribe(1, topics))
        return suback.reason_codes


class Client5(Client):
    """An MQTT 5 client."""

    def __init__(self, front: MQTTFrontEnd) -> None:
        super().__init__(front)
        self.decoder.protocol_level = 5

    def send(self, *packets: object) -> list:
        self.conn.receive(b"".join(codec.encode(p, 5) for p in packets))
        return self.received()

    def connect5(self, client_id: str, **properties: object) -> codec.Connack:
        [connack] = self.send(codec.Connect("MQTT", 5, True, 60, client_id, properties=properties))
        return connack
