"""Fixtures for the AMQP front end's sans-I/O tests: a front end over an in-memory core,
and a driver that speaks frames to an ``AMQPConnection`` and decodes its replies."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from broker.acl import TopicACL
from broker.auth import UserDB
from broker.config import AclRule
from broker.core import Broker
from broker.store.memory import MemoryStore
from protocols.amqp import codec
from protocols.amqp.connection import AMQPConnection
from protocols.amqp.frontend import AMQPFrontEnd


@pytest.fixture
def front() -> AMQPFrontEnd:
    return new_front()


def new_front(frame_max: int = 131072) -> AMQPFrontEnd:
    """A front end over a fresh in-memory core (for tests that need several, or one per
    hypothesis example)."""
    store = MemoryStore()
    trio.run(store.open)
    users = UserDB()
    users.ensure_default_users()
    users.add("alice", "secret")
    users.set_permissions("alice", "/", ".*", ".*", ".*")
    users.add("reader", "pw")
    users.set_permissions("reader", "/", "", "", ".*")
    acl = TopicACL([AclRule(topic="secret/#", allow=False)])
    return AMQPFrontEnd(Broker(store, users, acl), frame_max=frame_max, heartbeat=0)


class Client:
    """Drives one AMQPConnection: sends frames, returns the decoded frames it answers."""

    def __init__(self, front: AMQPFrontEnd) -> None:
        self.conn = AMQPConnection(front, peer="test", peer_loopback=True)
        self.decoder = codec.FrameDecoder(1 << 24)
        self.decoder.header_seen = True

    def raw(self, data: bytes) -> list:
        self.conn.receive(data)
        ticket = self.conn.end_of_batch()
        if ticket is not None:
            self.conn.synced(ticket)
        return self.replies()

    def replies(self) -> list:
        return [payload for _, _, payload in self.decoder.feed(self.conn.take_output())]

    def send(self, channel: int, *methods: Any) -> list:
        return self.raw(b"".join(pamqp_frame.marshal(m, channel) for m in methods))

    def login(self, user: str = "alice", password: str = "secret", *, client_properties=None):
        [start] = self.raw(codec.PROTOCOL_HEADER)
        assert isinstance(start, commands.Connection.Start)
        ok = commands.Connection.StartOk(
            client_properties=client_properties or {"capabilities": {"connection.blocked": True}},
            mechanism="PLAIN",
            response=f"\0{user}\0{password}",
        )
        return self.send(0, ok)

    def open(self, channel: int = 1) -> None:
        [tune] = self.login()
        assert isinstance(tune, commands.Connection.Tune)
        replies = self.send(
            0,
            commands.Connection.TuneOk(tune.channel_max, tune.frame_max, 0),
            commands.Connection.Open("/"),
        )
        assert isinstance(replies[0], commands.Connection.OpenOk)
        [ok] = self.send(channel, commands.Channel.Open())
        assert isinstance(ok, commands.Channel.OpenOk)

    def publish(self, channel: int, exchange: str, key: str, body: bytes, **props: Any) -> list:
        return self.raw(publish_frames(channel, exchange, key, body, **props))


def publish_frames(
    channel: int, exchange: str, key: str, body: bytes, *, mandatory: bool = False, **props: Any
) -> bytes:
    """basic.publish with its content header and body frame."""
    method = commands.Basic.Publish(exchange=exchange, routing_key=key, mandatory=mandatory)
    frames = [
        pamqp_frame.marshal(method, channel),
        pamqp_frame.marshal(
            ContentHeader(0, len(body), commands.Basic.Properties(**props)), channel
        ),
    ]
    if body:
        frames.append(pamqp_frame.marshal(ContentBody(body), channel))
    return b"".join(frames)


@pytest.fixture
def client(front: AMQPFrontEnd) -> Client:
    return Client(front)
