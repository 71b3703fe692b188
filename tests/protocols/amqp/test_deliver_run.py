"""A run of messages to a no-ack consumer goes out in one write (``deliver_settled``): its
bytes are exactly those of delivering the messages one by one, and it steps aside
whenever a delivery would be held back."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader as PamqpHeader

from broker.message import EMPTY_PROPERTIES, Message, Properties
from protocols.amqp import codec
from protocols.amqp.connection import OUTPUT_HIGH_WATER
from protocols.amqp.consumer import AMQPConsumer
from protocols.amqp.frontend import AMQPFrontEnd
from protocols.amqp.mapping import keep_block, properties_block_of

from .conftest import Client, new_front

FRAME_MAX = 4096
ROOM = FRAME_MAX - codec.FRAME_OVERHEAD

names = st.text(max_size=12)
exchanges = st.from_regex(r"[a-zA-Z0-9_.:@#,/+ -]{0,12}", fullmatch=True)  # as pamqp allows
#: empty, small, exactly one frame, just over one frame, several frames
sizes = st.sampled_from([0, 1, 64, ROOM - 1, ROOM, ROOM + 1, 2 * ROOM + 5])
bodies_of_one_size = st.tuples(sizes, st.integers(1, 12)).map(
    lambda spec: [bytes([i % 251]) * spec[0] for i in range(spec[1])]
)
bodies_of_mixed_sizes = st.lists(
    st.one_of(st.binary(max_size=80), sizes.map(lambda n: b"b" * n)), min_size=1, max_size=12
)
bodies = st.one_of(bodies_of_one_size, bodies_of_mixed_sizes)
#: anywhere, or just before the low octets of a tag carry over
tags = st.one_of(st.integers(1, 2**62), st.integers(1, 6).map(lambda n: (1 << (8 * n)) - 3))
header_values = st.one_of(st.integers(-(2**31), 2**31 - 1), names, st.binary(max_size=8))
core_properties = st.one_of(
    st.just(EMPTY_PROPERTIES),
    st.builds(
        Properties,
        content_type=st.none() | names,
        headers=st.none() | st.dictionaries(names, header_values, max_size=3),
        delivery_mode=st.none() | st.sampled_from([1, 2]),
        priority=st.none() | st.integers(0, 9),
        correlation_id=st.none() | names,
        message_id=st.none() | names,
        timestamp=st.none() | st.integers(0, 2**32),
        app_id=st.none() | names,
    ),
)


def one_by_one_with_pamqp(
    channel: int, ctag: str, exchange: str, key: str, props: commands.Basic.Properties
) -> Callable[[bytes, int], bytes]:
    """What pamqp encodes for each delivery, as a reference independent of our codec."""

    def encode(body: bytes, tag: int) -> bytes:
        frames = [
            pamqp_frame.marshal(commands.Basic.Deliver(ctag, tag, False, exchange, key), channel),
            pamqp_frame.marshal(PamqpHeader(0, len(body), props), channel),
        ]
        for offset in range(0, len(body), ROOM):
            frames.append(pamqp_frame.marshal(ContentBody(body[offset : offset + ROOM]), channel))
        return b"".join(frames)

    return encode


@settings(max_examples=300, deadline=None)
@given(
    channel=st.integers(1, 2047),
    ctag=names,
    exchange=exchanges,
    key=names,
    first_tag=tags,
    props=st.builds(
        commands.Basic.Properties,
        content_type=st.none() | names,
        headers=st.none() | st.dictionaries(names, st.integers(0, 1000) | names, max_size=3),
        delivery_mode=st.none() | st.sampled_from([1, 2]),
        message_id=st.none() | names,
    ),
    bodies=bodies,
    cached_framing=st.booleans(),
)
def test_deliver_run_is_the_deliveries_one_by_one(
    channel: int,
    ctag: str,
    exchange: str,
    key: str,
    first_tag: int,
    props: commands.Basic.Properties,
    bodies: list[bytes],
    cached_framing: bool,
) -> None:
    block = PamqpHeader(0, 0, props).marshal()[12:]
    head = codec.deliver_head(channel, ctag, exchange, key)
    framing = None
    if cached_framing and 0 < len(bodies[0]) <= ROOM:
        framing = codec.content_framing(channel, block, len(bodies[0]))
    joined = codec.deliver_run(channel, head, first_tag, block, bodies, FRAME_MAX, framing)
    encode = one_by_one_with_pamqp(channel, ctag, exchange, key, props)
    assert joined == b"".join(encode(body, first_tag + i) for i, body in enumerate(bodies))


def test_a_long_stream_of_one_size_keeps_its_tags_across_carries() -> None:
    props = commands.Basic.Properties(content_type="text/plain")
    block = PamqpHeader(0, 0, props).marshal()[12:]
    bodies = [b"%063d" % i for i in range(700)]
    encode = one_by_one_with_pamqp(3, "c", "amq.topic", "a.b", props)
    for first_tag in (1, 250, 2**16 - 300, 2**40 - 1):
        joined = codec.deliver_run(
            3, codec.deliver_head(3, "c", "amq.topic", "a.b"), first_tag, block, bodies, FRAME_MAX
        )
        assert joined == b"".join(encode(body, first_tag + i) for i, body in enumerate(bodies))


def open_consumer(front: AMQPFrontEnd, queue: str, channel: int, ctag: str) -> AMQPConsumer:
    client = Client(front)
    client.open(channel)
    client.send(channel, commands.Queue.Declare(queue=queue))
    client.send(channel, commands.Basic.Consume(queue=queue, consumer_tag=ctag, no_ack=True))
    return client.conn.channels[channel].consumers[ctag]


def frames_of(data: bytes) -> list:
    decoder = codec.FrameDecoder(FRAME_MAX)
    decoder.header_seen = True
    return decoder.feed(data)


@settings(max_examples=150, deadline=None)
@given(
    channel=st.integers(1, 20),
    ctag=names.filter(bool),
    exchange=names,
    key=names,
    first_tag=st.integers(1, 2**40),
    props=core_properties,
    kept=st.booleans(),
    bodies=bodies,
)
def test_a_run_sends_what_deliveries_one_by_one_send(
    channel: int,
    ctag: str,
    exchange: str,
    key: str,
    first_tag: int,
    props: Properties,
    kept: bool,
    bodies: list[bytes],
) -> None:
    """The whole path: the channel's run and the channel's deliveries one by one, with core
    properties mapped (or an AMQP publisher's block kept as received), tags consecutive
    from the channel's next."""
    front = new_front(FRAME_MAX)
    run, single = (
        open_consumer(front, "run", channel, ctag),
        open_consumer(front, "one", channel, ctag),
    )
    messages = [Message(exchange, key, body, props) for body in bodies]
    if kept:
        block = properties_block_of(Message(exchange, key, b"", props))
        for message in messages:
            keep_block(message, block)
    for consumer in (run, single):
        consumer.channel.next_tag = first_tag
        consumer.channel.conn.take_output()
    assert run.deliver_settled(run.queue, messages) == len(messages)
    for seq, message in enumerate(messages):
        assert single.deliver(single.queue, message, seq, False) is False
    sent = run.channel.conn.take_output()
    assert sent == single.channel.conn.take_output()
    delivers = [payload for kind, _, payload in frames_of(sent) if kind == codec.FRAME_METHOD]
    assert [d.delivery_tag for d in delivers] == list(range(first_tag, first_tag + len(bodies)))
    assert run.channel.next_tag == single.channel.next_tag == first_tag + len(bodies)
    assert not run.channel.unacked


def consuming(client: Client, *, no_ack: bool = True) -> AMQPConsumer:
    client.open(1)
    client.send(1, commands.Queue.Declare(queue="q"))
    client.send(1, commands.Basic.Consume(queue="q", consumer_tag="c", no_ack=no_ack))
    return client.conn.channels[1].consumers["c"]


def test_channel_flow_holds_a_run_back_and_releases_it_in_order(client: Client) -> None:
    consumer = consuming(client)
    client.send(1, commands.Channel.Flow(active=False))
    client.conn.vhost.publish_many([Message("", "q", b"m%d" % i) for i in range(5)])
    assert client.replies() == [] and len(consumer.queue) == 5
    replies = client.send(1, commands.Channel.Flow(active=True))
    assert [r for r in replies if isinstance(r, bytes)] == [b"m%d" % i for i in range(5)]
    tags = [r.delivery_tag for r in replies if isinstance(r, commands.Basic.Deliver)]
    assert tags == [1, 2, 3, 4, 5]


def test_a_full_output_takes_no_run(client: Client) -> None:
    consumer = consuming(client)
    client.conn.outbox += bytes(OUTPUT_HIGH_WATER + 1)
    messages = [Message("", "q", b"x")] * 3
    assert consumer.deliver_settled(consumer.queue, messages) == 0
    client.conn.outbox.clear()
    assert consumer.deliver_settled(consumer.queue, messages) == 3


def test_a_run_larger_than_the_output_goes_one_by_one(client: Client) -> None:
    consumer = consuming(client)
    big = Message("", "q", bytes(OUTPUT_HIGH_WATER // 2 + 1), EMPTY_PROPERTIES)
    assert consumer.deliver_settled(consumer.queue, [big, big, big]) == 0
    client.conn.vhost.publish_many([big, big, big])
    assert len(consumer.queue) == 1  # two went out one by one, then the output was full


def test_acked_consumers_take_runs_one_by_one(client: Client) -> None:
    consumer = consuming(client, no_ack=False)
    messages = [Message("", "q", b"x")] * 3
    assert consumer.deliver_settled(consumer.queue, messages) == 0
    client.conn.vhost.publish_many(messages)
    assert sorted(client.conn.channels[1].unacked) == [1, 2, 3]
