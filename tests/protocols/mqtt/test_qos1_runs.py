"""QoS 1 backlogs drain in batches laid out at once (``MQTTConnection.qos1_run``), whose
queue entries are the session's inflight records: what clients get must be what one by one
delivery would give them, through acks, resumption and a deleted queue."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.mqtt import codec
from protocols.mqtt.frontend import MQTTFrontEnd
from tests.protocols.mqtt.sansio import Client, Client5, new_front

USER_PROPERTY = {"user_property": [("k", "v")]}


def _subscriber(
    front: MQTTFrontEnd, level: int, window: int, resume: bool = False
) -> tuple[Client, list]:
    """Client ``s`` connected with a session that outlives the connection (MQTT 5: with a
    Receive Maximum of ``window``), new or resumed; and what came after the CONNACK."""
    if level == 5:
        sub: Client = Client5(front)
        properties = {
            "receive_maximum": window,
            "topic_alias_maximum": 4,
            "session_expiry_interval": 600,
        }
        connect = codec.Connect("MQTT", 5, not resume, 60, "s", properties=properties)
    else:
        sub = Client(front)
        connect = codec.Connect("MQTT", 4, False, 60, "s")
    connack, *after = sub.send(connect)
    assert connack.reason_code == 0 and connack.session_present == resume
    return sub, after


def _publisher(front: MQTTFrontEnd, level: int) -> Client:
    pub = Client5(front) if level == 5 else Client(front)
    assert (pub.connect5("p") if level == 5 else pub.connect("p")).reason_code == 0
    return pub


def _publishes(level: int, sent: list[tuple[str, bytes]]) -> list[codec.Publish]:
    properties = USER_PROPERTY if level == 5 else {}
    return [
        codec.Publish(topic, body, 1, False, False, index + 1, properties)
        for index, (topic, body) in enumerate(sent)
    ]


class Topics:
    """Resolves the topic aliases of an MQTT 5 client's deliveries."""

    def __init__(self) -> None:
        self.aliases: dict[int, str] = {}

    def __call__(self, packet: codec.Publish) -> str:
        alias = packet.properties.get("topic_alias")
        if alias is None:
            return packet.topic
        if packet.topic:
            self.aliases[alias] = packet.topic
        return self.aliases[alias]


def _ack(sub: Client, level: int, window: list[codec.Publish]) -> None:
    sub.conn.receive(b"".join(codec.encode(codec.Puback(p.packet_id), level) for p in window))


@settings(max_examples=60, deadline=None)
@given(
    level=st.sampled_from([4, 5]),
    sent=st.lists(
        st.tuples(st.sampled_from(["r/a", "r/b"]), st.sampled_from([b"", b"x" * 3, b"y" * 130])),
        min_size=1,
        max_size=40,
    ),
    window=st.integers(2, 7),
    first_id=st.sampled_from([1, 65530]),
)
def test_a_backlog_arrives_whole_in_order_with_free_packet_ids(
    level: int, sent: list[tuple[str, bytes]], window: int, first_id: int
) -> None:
    """Any mix of topics and sizes (runs of one shape and breaks between them), any window,
    packet ids wrapping past 65535: every message once, in order, as QoS 1 with its
    properties; no packet id twice in flight; nothing left unacked."""
    front = new_front(max_inflight=window)
    sub, _ = _subscriber(front, level, window)
    sub.subscribe(("r/#", 1))
    session = front.sessions["s"]
    session._next_id = first_id  # the batch path must not run past 65535
    pub = _publisher(front, level)
    pub.send(*_publishes(level, sent))
    topic_of = Topics()
    got = []
    while delivered := sub.received():
        assert len(delivered) <= window
        assert len({p.packet_id for p in delivered}) == len(delivered)
        for packet in delivered:
            assert (packet.qos, packet.dup, packet.retain) == (1, False, False)
            if level == 5:
                assert packet.properties["user_property"] == [("k", "v")]
            got.append((topic_of(packet), packet.payload))
        _ack(sub, level, delivered)
    assert got == sent
    assert not session.inflight and not session.queue.unacked


@pytest.mark.parametrize("level", [4, 5])
def test_a_resumed_session_gets_its_unacked_batch_again(level: int) -> None:
    """A batch out when the client went away is sent again with DUP and its packet ids
    when the session resumes; acking it settles the queue, and the rest follows."""
    front = new_front(max_inflight=4)
    sub, _ = _subscriber(front, level, 4)
    sub.subscribe(("r/#", 1))
    pub = _publisher(front, level)
    sent = [("r/a", bytes([i]) * 10) for i in range(10)]
    pub.send(*_publishes(level, sent))
    first = sub.received()
    _ack(sub, level, first)
    batch = sub.received()  # from the backlog: a batch of one shape
    assert len(batch) == 4
    sub.conn.connection_lost()
    again, resent = _subscriber(front, level, 4, resume=True)
    assert [(p.packet_id, p.payload, p.dup) for p in resent] == [
        (p.packet_id, p.payload, True) for p in batch
    ]
    _ack(again, level, resent)
    rest = again.received()
    _ack(again, level, rest)
    assert [p.payload for p in first + batch + rest] == [body for _, body in sent]
    session = front.sessions["s"]
    assert not session.inflight and not session.queue.unacked and not len(session.queue)


def test_acks_for_a_batch_whose_queue_was_deleted_are_harmless() -> None:
    """The session's queue deleted under a batch in flight (e.g. through the management
    API): the client's later acks settle nothing, but its packet ids and window stay
    taken until then; a new subscription delivers afresh."""
    front = new_front(max_inflight=3)
    sub, _ = _subscriber(front, 4, 3)
    sub.subscribe(("r/#", 1))
    pub = _publisher(front, 4)
    pub.send(*_publishes(4, [("r/a", b"m%d" % i) for i in range(6)]))
    _ack(sub, 4, sub.received())
    batch = sub.received()
    session = front.sessions["s"]
    front.vhost.delete_queue(session.queue.name)
    assert set(session.inflight) == {p.packet_id for p in batch}
    sub.subscribe(("r/#", 1))
    pub.send(codec.Publish("r/a", b"new", 1, False, False, 99))
    assert sub.received() == []  # the window is still taken by the old batch
    _ack(sub, 4, batch)
    [fresh] = sub.received()
    assert fresh.payload == b"new"
    _ack(sub, 4, [fresh])
    assert not session.inflight and not session.queue.unacked


def test_pubrec_for_a_batch_delivery_is_ignored() -> None:
    """QoS 2 acks for a QoS 1 delivery of a batch change nothing; its PUBACK settles it."""
    front = new_front(max_inflight=2)
    sub, _ = _subscriber(front, 4, 2)
    sub.subscribe(("r/#", 1))
    pub = _publisher(front, 4)
    pub.send(*_publishes(4, [("r/a", b"m%d" % i) for i in range(4)]))
    _ack(sub, 4, sub.received())
    batch = sub.received()
    assert len(batch) == 2
    replies = sub.send(codec.Pubrec(batch[0].packet_id), codec.Pubcomp(batch[1].packet_id))
    assert all(type(r) is codec.Pubrel for r in replies)
    session = front.sessions["s"]
    assert set(session.inflight) == {p.packet_id for p in batch}
    _ack(sub, 4, batch)
    assert not session.inflight and not session.queue.unacked
