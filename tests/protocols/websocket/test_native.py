"""The native protocol's state machine over a real core (in-memory store): auth, the
request/reply rules, publish/subscribe, consumers with prefetch and acks, flow control,
and arbitrary frames that must always get a reply and never break the connection."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.acl import TopicACL
from broker.auth import UserDB
from broker.config import AclRule
from broker.core import Broker
from broker.store.memory import MemoryStore
from protocols.websocket.consumers import MAX_QUEUED
from protocols.websocket.frames import JsonCodec
from protocols.websocket.native import OUTPUT_HIGH_WATER, POLICY_VIOLATION, NativeConnection


def make_broker() -> Broker:
    users = UserDB()
    users.ensure_default_users()
    users.add("alice", "secret")
    users.set_permissions("alice", "/", ".*", ".*", ".*")
    users.add("noperm", "nopass")
    acl = TopicACL([AclRule(user="*", topic="private/#", action="all", allow=False)])
    return Broker(MemoryStore(), users, acl)


class Client:
    """A connection driven with JSON frames; its outbox read back as frames."""

    def __init__(self, broker: Broker, loopback: bool = True) -> None:
        self.conn = NativeConnection(broker, JsonCodec(), peer="test", peer_loopback=loopback)
        self._ids = iter(range(1, 1_000_000))
        #: frames read while looking for a reply, not yet taken by the test
        self.pending: list[dict[str, Any]] = []

    def send(self, **frame: Any) -> None:
        self.conn.receive(json.dumps(frame))

    def frames(self) -> list[dict[str, Any]]:
        out, self.pending = self.pending, []
        out.extend(json.loads(data) for data in self.conn.take_output())
        return out

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        request_id = next(self._ids)
        self.send(op=op, id=request_id, **fields)
        frames = self.frames()
        replies = [f for f in frames if f.get("id") == request_id]
        assert len(replies) == 1, frames
        self.pending = [f for f in frames if f.get("id") != request_id]
        return replies[0]


@pytest.fixture
def broker() -> Broker:
    return make_broker()


def test_first_request_without_credentials_is_a_guest(broker: Broker) -> None:
    client = Client(broker)
    assert client.request("ping") == {"op": "ok", "id": 1}
    assert client.conn.username == "guest"


def test_guest_off_loopback_is_refused_and_closed(broker: Broker) -> None:
    client = Client(broker, loopback=False)
    client.send(op="ping", id=1)
    assert client.frames()[0]["code"] == "access_refused"
    assert client.conn.closing == (POLICY_VIOLATION, "authentication failed")
    client.send(op="ping", id=2)
    assert client.frames() == []


def test_auth_first_frame(broker: Broker) -> None:
    client = Client(broker)
    assert client.request("auth", username="alice", password="secret")["user"] == "alice"
    assert client.request("auth", username="alice", password="x")["code"] == ("precondition_failed")


def test_basic_credentials(broker: Broker) -> None:
    client = Client(broker)
    client.conn.authenticate_basic("Basic " + base64.b64encode(b"alice:secret").decode())
    assert client.conn.username == "alice"
    refused = Client(broker)
    refused.conn.authenticate_basic("Bearer token")
    assert refused.conn.closing is not None and refused.frames()[0]["code"] == "access_refused"


def test_errors_without_an_id_are_still_sent(broker: Broker) -> None:
    client = Client(broker)
    client.send(op="nonsense")
    assert client.frames() == [
        {"op": "error", "code": "bad_request", "message": "unknown op 'nonsense'"}
    ]
    client.send(op="ping")
    assert client.frames() == []  # an ok only answers a request with an id


def test_subscription_and_acl(broker: Broker) -> None:
    client = Client(broker)
    client.request("auth", username="alice", password="secret")
    assert client.request("subscribe", topic="private/#")["code"] == "access_refused"
    client.request("subscribe", topic="t/+")
    client.request("subscribe", topic="t/#")  # overlapping: still one copy
    assert client.request("publish", topic="t/1", payload="x")["routed"] == 1
    assert [f["payload"] for f in client.frames()] == ["x"]


def test_durable_qos1_reply_waits_for_the_store(broker: Broker) -> None:
    client = Client(broker)
    client.request("declare", queue="d", durable=True)
    client.send(op="publish", id=7, exchange="", routing_key="d", payload="p", qos=1)
    assert client.frames() == [] and len(client.conn.held) == 1
    client.conn.release_held(1)
    assert client.frames() == [{"op": "ok", "id": 7, "routed": 1}]
    assert client.request("publish", exchange="", routing_key="d", payload="p")["op"] == "ok"


def test_prefetch_and_acks(broker: Broker) -> None:
    client = Client(broker)
    client.request("declare", queue="q")
    for n in range(5):
        client.request("publish", exchange="", routing_key="q", payload=str(n))
    reply = client.request("consume", queue="q", prefetch=2)
    assert reply["queue"] == "q"
    deliveries = client.frames()
    assert [d["payload"] for d in deliveries] == ["0", "1"]
    client.request("ack", delivery_tag=deliveries[0]["delivery_tag"])
    client.request("nack", delivery_tag=deliveries[1]["delivery_tag"], requeue=False)
    assert [d["payload"] for d in client.frames()] == ["2", "3"]


def test_deliveries_follow_the_consume_reply(broker: Broker) -> None:
    client = Client(broker)
    client.request("declare", queue="order")
    client.request("publish", exchange="", routing_key="order", payload="m")
    client.send(op="consume", id=99, queue="order")
    frames = client.frames()
    assert [f["op"] for f in frames] == ["ok", "message"]


def test_close_returns_unacked_and_removes_the_subscription_queue(broker: Broker) -> None:
    client = Client(broker)
    client.request("declare", queue="back")
    client.request("publish", exchange="", routing_key="back", payload="m")
    client.request("consume", queue="back")
    client.request("subscribe", topic="x")
    assert len(client.frames()) == 1
    vhost = broker.vhost()
    client.conn.close()
    assert len(vhost.queues["back"]) == 1
    assert not [n for n in vhost.queues if n.startswith("ws.subscriptions.")]
    other = Client(broker)
    other.request("consume", queue="back")
    assert other.frames()[0]["redelivered"] is True


def test_a_full_outbox_holds_deliveries_in_the_queue(broker: Broker) -> None:
    """A client that does not read: consumers stop at the high-water mark, and the
    subscription queue keeps at most MAX_QUEUED messages, dropping the oldest."""
    client = Client(broker)
    client.request("subscribe", topic="flood")
    publisher = Client(broker)
    body = "x" * 10_000
    sent = OUTPUT_HIGH_WATER // len(body) + MAX_QUEUED + 50
    for _ in range(sent):
        publisher.send(op="publish", topic="flood", payload=body)
    conn = client.conn
    assert conn.outbox_bytes < OUTPUT_HIGH_WATER + 2 * len(body)
    queue = conn._subscription_queue
    assert queue is not None and len(queue) == MAX_QUEUED
    waiting = len(conn.outbox)
    received = 0
    while True:
        received += len(conn.take_output())
        conn.output_drained()  # the client caught up: the queue delivers again
        if not conn.outbox:
            break
    assert received == waiting + MAX_QUEUED < sent


ops = st.sampled_from(
    [
        "auth",
        "ping",
        "publish",
        "subscribe",
        "unsubscribe",
        "consume",
        "cancel",
        "ack",
        "nack",
        "declare",
        "bind",
        "unbind",
        "bogus",
    ]
)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.text(max_size=12),
    st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=5), max_size=3),
)
field_names = st.sampled_from(
    [
        "topic",
        "payload",
        "qos",
        "retain",
        "queue",
        "exchange",
        "routing_key",
        "prefetch",
        "delivery_tag",
        "requeue",
        "durable",
        "type",
        "source",
        "arguments",
        "properties",
        "encoding",
        "username",
        "password",
        "exclusive",
        "passive",
    ]
)


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(st.tuples(ops, st.dictionaries(field_names, values)), max_size=8))
def test_any_request_gets_exactly_one_reply(frames: list) -> None:
    client = Client(make_broker())
    for n, (op, fields) in enumerate(frames, start=1):
        client.send(op=op, id=n, **fields)
        replies = [f for f in client.frames() if f.get("id") == n]
        if client.conn.closing is not None:
            return
        assert len(replies) == 1 and replies[0]["op"] in ("ok", "error"), replies
        assert replies[0].get("code") != "internal", replies
    client.conn.close()
