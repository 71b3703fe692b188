"""The topic service over a real front end and core, without sockets: SPEC item 4's
mirror of retained values and the notifications of filter nodes, checked on the bytes a
session's stream would carry."""

from __future__ import annotations

import pytest
import trio
from lxml import etree

from broker.acl import TopicACL
from broker.auth import UserDB
from broker.core import Broker
from broker.message import Message, Properties
from broker.store.memory import MemoryStore
from protocols.xmpp.connection import StreamSettings
from protocols.xmpp.frontend import XMPPFrontEnd
from protocols.xmpp.jid import parse_jid
from protocols.xmpp.pubsub.bridge import BACKLOG, QUEUE
from protocols.xmpp.session import Session

NS = "http://jabber.org/protocol/pubsub"
EVENT = f"{{{NS}#event}}"


@pytest.fixture
def front() -> XMPPFrontEnd:
    store = MemoryStore()
    trio.run(store.open)
    users = UserDB()
    for name in ("alice", "bob"):
        users.add(name, "pw")
        users.set_permissions(name, "/", ".*", ".*", ".*")
    return XMPPFrontEnd(Broker(store, users, TopicACL([])), StreamSettings("localhost"), False)


def _session(front: XMPPFrontEnd, jid: str) -> Session:
    conn = front.connection(peer="test", peer_loopback=True, secure=True)
    session = Session(conn, parse_jid(jid), jid.split("@")[0])
    session.available = True
    front.sessions.setdefault(session.bare, {})[session.jid.resource] = session
    return session


def _request(
    front: XMPPFrontEnd, session: Session, kind: str, payload: str
) -> tuple[etree._Element, list[etree._Element]]:
    """The reply to an iq, and the stanzas that followed it."""
    iq = etree.fromstring(
        f"<iq xmlns='jabber:client' type='{kind}' id='q' to='pubsub.localhost'"
        f" from='{session.jid_text}'>{payload}</iq>"
    )
    front.components["pubsub.localhost"].stanza(session, iq, parse_jid("pubsub.localhost"))
    reply, *after = _taken(session)
    return reply, after


def _taken(session: Session) -> list[etree._Element]:
    data = bytes(session.conn.outbox)
    session.conn.outbox.clear()
    return list(etree.fromstring(b"<s xmlns='jabber:client'>" + data + b"</s>"))


def _publish(front: XMPPFrontEnd, topic: str, body: bytes, retain: bool = False) -> None:
    """What an MQTT publish does in the core."""
    message = Message(
        "amq.topic", topic.replace("/", "."), body, Properties(), publisher="bob", topic=topic
    )
    if retain:
        message.extra = {"retain": True}
        front.broker.retained.set(topic, message)
    front.broker.vhost().publish(message)


def test_a_filter_node_names_the_concrete_topic(front: XMPPFrontEnd) -> None:
    alice = _session(front, "alice@localhost/desk")
    result, _ = _request(
        front,
        alice,
        "set",
        f"<pubsub xmlns='{NS}'><subscribe node='s/+/t' jid='alice@localhost'/></pubsub>",
    )
    assert result.get("type") == "result"
    _publish(front, "s/room1/t", b"21")
    (message,) = _taken(alice)
    items = message.find(f"{EVENT}event/{EVENT}items")
    assert items.get("node") == "s/room1/t"
    data = items.find(f"{EVENT}item/{{urn:broker:payload:0}}data")
    assert (data.text, data.get("encoding"), data.get("content-type")) == ("21", "utf-8", None)
    assert items.find(f"{EVENT}item").get("publisher") == "bob@localhost"


def test_retained_values_are_items_and_clearing_retracts(front: XMPPFrontEnd) -> None:
    alice = _session(front, "alice@localhost/desk")
    _publish(front, "s/hall/t", b"\x00\x01", retain=True)
    reply, _ = _request(
        front, alice, "get", f"<pubsub xmlns='{NS}'><items node='s/hall/t'/></pubsub>"
    )
    (item,) = reply.iter(f"{{{NS}}}item")
    assert item.find("{urn:broker:payload:0}data").get("encoding") == "base64"
    subscribe = f"<pubsub xmlns='{NS}'><subscribe node='s/hall/t' jid='alice@localhost'/></pubsub>"
    _, after = _request(front, alice, "set", subscribe)
    assert [m.tag for m in after] == ["{jabber:client}message"]  # the last item
    _publish(front, "s/hall/t", b"", retain=True)  # MQTT's way of clearing
    (message,) = _taken(alice)  # the retraction, and no empty notification
    (retract,) = message.iter(f"{EVENT}retract")
    assert retract.get("id") == item.get("id")
    reply, _ = _request(
        front, alice, "get", f"<pubsub xmlns='{NS}'><items node='s/hall/t'/></pubsub>"
    )
    assert list(reply.iter(f"{{{NS}}}item")) == []


def test_an_item_publish_is_a_retained_publish_with_its_id(front: XMPPFrontEnd) -> None:
    alice = _session(front, "alice@localhost/desk")
    _request(
        front,
        alice,
        "set",
        f"<pubsub xmlns='{NS}'><publish node='cmd/light'><item id='i1'>"
        "<state xmlns='urn:example'>on</state></item></publish></pubsub>",
    )
    retained = front.broker.retained.get("cmd/light")
    assert retained is not None
    assert retained.body == b'<state xmlns="urn:example">on</state>'
    assert (retained.properties.content_type, retained.properties.message_id) == (
        "application/xml",
        "i1",
    )
    assert alice.conn.sync_before_output  # the result waits for the store


def test_unsubscribing_the_last_subscriber_unbinds(front: XMPPFrontEnd) -> None:
    alice = _session(front, "alice@localhost/desk")
    subscribe = f"<pubsub xmlns='{NS}'><subscribe node='a/#' jid='alice@localhost'/></pubsub>"
    _request(front, alice, "set", subscribe)
    queue = front.broker.vhost().queue(QUEUE)
    topic = front.broker.vhost().exchange("amq.topic")
    assert any(b.destination is queue for b in topic.bindings.values())
    unsubscribe = f"<pubsub xmlns='{NS}'><unsubscribe node='a/#' jid='alice@localhost'/></pubsub>"
    assert _request(front, alice, "set", unsubscribe)[0].get("type") == "result"
    assert not any(b.destination is queue for b in topic.bindings.values())
    assert "a/#" not in front.pubsub.records  # nothing left to keep


def test_a_run_of_publishes_is_notified_in_order(front: XMPPFrontEnd) -> None:
    alice = _session(front, "alice@localhost/desk")
    subscribe = f"<pubsub xmlns='{NS}'><subscribe node='run/t' jid='alice@localhost'/></pubsub>"
    _request(front, alice, "set", subscribe)
    run = [
        Message("amq.topic", "run.t", str(n).encode(), Properties(), publisher="bob", topic="run/t")
        for n in range(3)
    ]
    front.broker.vhost().publish_many(run)
    texts = [m.findtext(".//{urn:broker:payload:0}data") for m in _taken(alice)]
    assert texts == ["0", "1", "2"]


def test_a_subscriber_falling_behind_holds_publishers_until_its_stream_is_out(
    front: XMPPFrontEnd,
) -> None:
    alice = _session(front, "alice@localhost/desk")
    subscribe = f"<pubsub xmlns='{NS}'><subscribe node='big/t' jid='alice@localhost'/></pubsub>"
    _request(front, alice, "set", subscribe)
    flow = front.broker.flow
    _publish(front, "big/t", b"x" * 1000)
    assert not flow.backlogged
    for _ in range(BACKLOG // 1000):
        _publish(front, "big/t", b"x" * 1000)
    assert flow.backlogged  # publishers wait (``FlowControl.wait``) ...
    alice.conn.outbox.clear()
    alice.conn.backlog_over()  # ... until the adapter has sent the outbox
    assert not flow.backlogged
    _publish(front, "big/t", b"x" * 1000)
    assert not flow.backlogged


def test_a_stream_that_ends_releases_publishers(front: XMPPFrontEnd) -> None:
    alice = _session(front, "alice@localhost/desk")
    subscribe = f"<pubsub xmlns='{NS}'><subscribe node='big/t' jid='alice@localhost'/></pubsub>"
    _request(front, alice, "set", subscribe)
    for _ in range(BACKLOG // 1000 + 1):
        _publish(front, "big/t", b"x" * 1000)
    assert front.broker.flow.backlogged
    alice.conn.close()
    assert not front.broker.flow.backlogged
