"""A driver for the sans-I/O MQTT connection in tests: bytes in, decoded packets out."""

from __future__ import annotations

from protocols.mqtt import codec
from protocols.mqtt.connection import MQTTConnection
from protocols.mqtt.frontend import MQTTFrontEnd


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
