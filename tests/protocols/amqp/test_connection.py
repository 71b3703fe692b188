"""The AMQP connection state machine, driven frame by frame without sockets."""

from __future__ import annotations

from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.body import ContentBody

from broker.alarms import MEMORY
from protocols.amqp import codec
from protocols.amqp.codec import Ack, ContentHeader
from protocols.amqp.frontend import AMQPFrontEnd

from .conftest import Client, publish_frames


def test_start_advertises_rabbitmq_capabilities(client: Client) -> None:
    [start] = client.raw(codec.PROTOCOL_HEADER)
    capabilities = start.server_properties["capabilities"]
    for name in (
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ):
        assert capabilities[name] is True
    assert set(start.mechanisms.split()) == {"PLAIN", "AMQPLAIN"}


def test_wrong_password_is_refused_with_403(client: Client) -> None:
    [close] = client.login(password="wrong")
    assert isinstance(close, commands.Connection.Close) and close.reply_code == 403
    assert close.reply_text.startswith("ACCESS_REFUSED")


def test_amqplain_login(client: Client) -> None:
    client.raw(codec.PROTOCOL_HEADER)
    response = codec.field_table({"LOGIN": "alice", "PASSWORD": "secret"})[4:]
    ok = commands.Connection.StartOk(mechanism="AMQPLAIN", response=response.decode())
    [tune] = client.send(0, ok)
    assert isinstance(tune, commands.Connection.Tune)


def test_vhost_without_permission_is_not_allowed(front: AMQPFrontEnd) -> None:
    front.broker.users.add("nobody", "pw")
    client = Client(front)
    [tune] = client.login("nobody", "pw")
    [close] = client.send(
        0, commands.Connection.TuneOk(0, tune.frame_max, 0), commands.Connection.Open("/")
    )
    assert isinstance(close, commands.Connection.Close) and close.reply_code == 530


def test_channel_error_closes_only_the_channel(client: Client) -> None:
    client.open(1)
    client.send(2, commands.Channel.Open())
    [close] = client.send(1, commands.Queue.Declare(queue="missing", passive=True))
    assert isinstance(close, commands.Channel.Close) and close.reply_code == 404
    assert client.send(1, commands.Queue.Declare(queue="ignored")) == []  # until close-ok
    client.send(1, commands.Channel.CloseOk())
    [ok] = client.send(2, commands.Queue.Declare(queue="q2"))
    assert isinstance(ok, commands.Queue.DeclareOk)


def test_method_on_a_channel_that_is_not_open_is_504(client: Client) -> None:
    client.open(1)
    [close] = client.send(9, commands.Queue.Declare(queue="q"))
    assert isinstance(close, commands.Connection.Close) and close.reply_code == 504


def test_body_without_header_is_505(client: Client) -> None:
    client.open(1)
    [close] = client.raw(pamqp_frame.marshal(ContentBody(b"stray"), 1))
    assert isinstance(close, commands.Connection.Close) and close.reply_code == 505


def test_confirms_for_stored_messages_wait_for_the_store(client: Client) -> None:
    client.open(1)
    client.send(1, commands.Queue.Declare(queue="durable", durable=True))
    client.send(1, commands.Confirm.Select())
    client.conn.receive(publish_frames(1, "", "durable", b"x", delivery_mode=2))
    first = client.conn.end_of_batch()
    assert first is not None and client.replies() == []
    client.conn.receive(publish_frames(1, "", "nowhere", b"y"))
    second = client.conn.end_of_batch()  # not stored, but behind the first: waits too
    assert second is not None and client.replies() == []
    client.conn.synced(first)
    assert client.replies() == [Ack(1, True)]
    client.conn.synced(second)
    assert client.replies() == [Ack(2, True)]
    client.conn.receive(publish_frames(1, "", "nowhere", b"z"))
    assert client.conn.end_of_batch() is None
    assert client.replies() == [Ack(3, True)]


def test_unroutable_mandatory_publish_is_returned_then_confirmed(client: Client) -> None:
    client.open(1)
    client.send(1, commands.Confirm.Select())
    frames = publish_frames(1, "amq.direct", "nowhere", b"hi", mandatory=True)
    returned, header, body, ack = client.raw(frames)
    assert isinstance(returned, commands.Basic.Return) and returned.reply_code == 312
    assert isinstance(header, ContentHeader) and body == b"hi"
    assert ack == Ack(1, True)


def test_resource_alarm_blocks_and_unblocks(client: Client, front: AMQPFrontEnd) -> None:
    client.open(1)
    front.broker.alarms.set(MEMORY, True)
    [blocked] = client.replies()
    assert isinstance(blocked, commands.Connection.Blocked) and "memory" in blocked.reason
    assert not front.broker.alarms.cleared.is_set()
    front.broker.alarms.set(MEMORY, False)
    [unblocked] = client.replies()
    assert isinstance(unblocked, commands.Connection.Unblocked)
    assert front.broker.alarms.cleared.is_set()


def test_topic_acl_applies_to_amqp_publishes(client: Client) -> None:
    client.open(1)
    [close] = client.publish(1, "amq.topic", "secret.plans", b"x")
    assert isinstance(close, commands.Channel.Close) and close.reply_code == 403


def test_write_permission_is_checked(front: AMQPFrontEnd) -> None:
    client = Client(front)
    [tune] = client.login("reader", "pw")
    client.send(0, commands.Connection.TuneOk(0, tune.frame_max, 0), commands.Connection.Open("/"))
    client.send(1, commands.Channel.Open())
    [close] = client.publish(1, "amq.direct", "k", b"x")
    assert isinstance(close, commands.Channel.Close) and close.reply_code == 403


def test_publishes_split_anywhere_arrive_alike(front: AMQPFrontEnd) -> None:
    """Whole publishes in one read take the fast path (runs routed at once); split ones go
    frame by frame: consumers cannot tell."""
    stream = b"".join(
        publish_frames(1, "", "split", body, content_type="text/plain")
        for body in (b"one", b"", b"three" * 50)
    )
    consumer = Client(front)
    consumer.open(1)
    consumer.send(1, commands.Queue.Declare(queue="split"))
    consumer.send(1, commands.Basic.Consume(queue="split", no_ack=True))
    expected = None
    for cut in [*range(1, len(stream), 7), len(stream)]:
        publisher = Client(front)
        publisher.open(1)
        publisher.raw(stream[:cut])
        publisher.raw(stream[cut:])
        got = consumer.replies()
        bodies = [p for p in got if isinstance(p, bytes)]
        headers = [(p.body_size, p.properties) for p in got if isinstance(p, ContentHeader)]
        expected = expected or (bodies, headers)
        assert (bodies, headers) == expected
    assert expected is not None and expected[0] == [b"one", b"three" * 50]


def test_content_bytes_match_the_frame_by_frame_encoding() -> None:
    for body in (b"", b"x" * 10, b"y" * 5000):
        whole = codec.content_bytes(3, b"\x00\x00", body, 4096)
        assert whole == b"".join(codec.content_frames(3, len(body), b"\x00\x00", body, 4096))
        if 0 < len(body) <= 4096 - codec.FRAME_OVERHEAD:
            framing = codec.content_framing(3, b"\x00\x00", len(body))
            assert framing + body + b"\xce" == whole
