"""The AMQP frame codec: its fast paths agree with pamqp, malformed frames get the reply
code the connection closes with, and no input raises anything but the codec's errors."""

from __future__ import annotations

import datetime
import decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader as PamqpHeader

from broker.message import Message, Properties, decode_message, encode_message
from protocols.amqp import codec
from protocols.amqp.codec import (
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    PROTOCOL_HEADER,
    Ack,
    AMQPError,
    BadProtocolHeader,
    ContentHeader,
    FrameDecoder,
    Publish,
)
from protocols.amqp.mapping import (
    core_properties,
    properties_block_of,
    properties_from_block,
    wire_properties,
)


def decoder() -> FrameDecoder:
    d = FrameDecoder(131072)
    assert d.feed(PROTOCOL_HEADER) == []
    return d


def test_publish_and_ack_fast_paths_agree_with_pamqp() -> None:
    publish = commands.Basic.Publish(exchange="amq.topic", routing_key="a.b", mandatory=True)
    ack = commands.Basic.Ack(delivery_tag=2**40, multiple=True)
    data = pamqp_frame.marshal(publish, 3) + pamqp_frame.marshal(ack, 3)
    frames = decoder().feed(data)
    assert frames == [
        (FRAME_METHOD, 3, Publish("amq.topic", "a.b", True, False)),
        (FRAME_METHOD, 3, Ack(2**40, True)),
    ]


def test_frames_split_anywhere_decode_alike() -> None:
    props = commands.Basic.Properties(content_type="text/plain", headers={"k": "v"})
    data = b"".join(
        (
            pamqp_frame.marshal(commands.Queue.Declare(queue="q", durable=True), 1),
            pamqp_frame.marshal(PamqpHeader(0, 5, props), 1),
            pamqp_frame.marshal(ContentBody(b"hello"), 1),
            codec.HEARTBEAT_FRAME,
        )
    )
    whole = decoder().feed(data)
    for cut in range(1, len(data)):
        d = decoder()
        assert _plain(d.feed(data[:cut]) + d.feed(data[cut:])) == _plain(whole)
    kinds = [(k, ch) for k, ch, _ in whole]
    assert kinds == [(FRAME_METHOD, 1), (FRAME_HEADER, 1), (FRAME_BODY, 1), (FRAME_HEARTBEAT, 0)]
    declare = whole[0][2]
    assert isinstance(declare, commands.Queue.Declare) and declare.queue == "q"
    header = whole[1][2]
    assert isinstance(header, ContentHeader) and header.body_size == 5
    assert properties_from_block(header.properties).headers == {"k": "v"}
    assert whole[2][2] == b"hello"


def _plain(frames: list) -> list:
    """Frames with pamqp methods as (name, arguments): methods have no equality."""
    return [
        (kind, ch, (p.name, {k: getattr(p, k) for k in p.__slots__}))
        if hasattr(p, "__slots__") and hasattr(p, "marshal")
        else (kind, ch, p)
        for kind, ch, p in frames
    ]


def test_garbage_protocol_header() -> None:
    with pytest.raises(BadProtocolHeader):
        FrameDecoder(131072).feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(BadProtocolHeader):
        FrameDecoder(131072).feed(b"AMQP\x01\x01\x00\x09")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (bytes((1, 0, 1)) + (200_000).to_bytes(4, "big"), codec.FRAME_ERROR),  # over frame_max
        (bytes((1, 0, 1, 0, 0, 0, 4)) + b"\x00\x0a\x00\x0a" + b"\x00", codec.FRAME_ERROR),
        (bytes((9, 0, 1, 0, 0, 0, 0, 0xCE)), codec.FRAME_ERROR),  # unknown frame type
        (bytes((8, 0, 1, 0, 0, 0, 0, 0xCE)), codec.FRAME_ERROR),  # heartbeat on a channel
        (codec.frame(FRAME_METHOD, 1, b"\x00\x63\x00\x01"), codec.NOT_IMPLEMENTED),  # 99.1
        (codec.frame(FRAME_METHOD, 1, b"\x00\x32\x00\x0a\x00"), codec.SYNTAX_ERROR),  # truncated
    ],
    ids=[
        "frame-max",
        "frame-end",
        "frame-type",
        "heartbeat-channel",
        "unknown-method",
        "truncated-method",
    ],
)
def test_malformed_frames_name_their_reply_code(data: bytes, code: int) -> None:
    with pytest.raises(AMQPError) as caught:
        decoder().feed(data)
    assert caught.value.code == code


def test_unknown_field_table_type_is_a_syntax_error() -> None:
    arguments = b"\x00\x00\x00\x04\x01kZ"  # key "k", value of type 'Z' (none such)
    payload = (
        b"\x00\x32\x00\x0a"  # queue.declare
        + b"\x00\x00"
        + b"\x01q"
        + b"\x00"
        + arguments
    )
    with pytest.raises(AMQPError) as caught:
        decoder().feed(codec.frame(FRAME_METHOD, 1, payload))
    assert caught.value.code == codec.SYNTAX_ERROR


def test_deliver_head_matches_pamqp() -> None:
    deliver = commands.Basic.Deliver("ctag", 7, True, "ex", "rk")
    before, after = codec.deliver_head(5, "ctag", "ex", "rk")
    ours = before + (7 << 8 | 1).to_bytes(9, "big") + after
    assert ours == pamqp_frame.marshal(deliver, 5)


def test_content_frames_split_at_frame_max() -> None:
    body = bytes(range(256)) * 100
    parts = b"".join(codec.content_frames(1, len(body), b"\x00\x00", body, 4096))
    frames = FrameDecoder(4096)
    frames.header_seen = True
    decoded = frames.feed(parts)
    assert decoded[0][0] == FRAME_HEADER and decoded[0][2].body_size == len(body)
    assert b"".join(f[2] for f in decoded[1:]) == body
    assert all(len(f[2]) <= 4096 - codec.FRAME_OVERHEAD for f in decoded[1:])


def test_every_property_round_trips_through_the_core_and_the_store() -> None:
    stamp = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
    headers = {
        "s": "text",
        "i": 70000,
        "neg": -3,
        "b": True,
        "d": decimal.Decimal("3.14"),
        "t": stamp,
        "bytes": bytearray(b"\x00\xff"),
        "nested": {"list": [1, "two", {"three": 3.5}], "empty": {}},
        "void": None,
    }
    wire = commands.Basic.Properties(
        content_type="application/json",
        content_encoding="gzip",
        headers=headers,
        delivery_mode=2,
        priority=7,
        correlation_id="c-1",
        reply_to="replies",
        expiration="60000",
        message_id="m-1",
        timestamp=stamp,
        message_type="event",
        user_id="alice",
        app_id="tests",
    )
    wire.cluster_id = "cluster-1"  # deprecated; pamqp refuses it in the constructor
    core = core_properties(wire)
    stored = decode_message(encode_message(Message("ex", "rk", b"x", core)))
    again = wire_properties(stored.properties)
    assert again == wire
    assert again.marshal() == wire.marshal()


def test_empty_properties_share_one_object() -> None:
    assert properties_from_block(b"\x00\x00") is properties_from_block(b"\x00\x00")
    assert properties_from_block(b"\x00\x00") == Properties()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=60))
def test_arbitrary_bytes_only_ever_raise_codec_errors(data: bytes, cut: int) -> None:
    d = decoder()
    try:
        d.feed(data[:cut])
        d.feed(data[cut:])
    except AMQPError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_valid_frames_only_ever_raise_codec_errors(data: st.DataObject) -> None:
    props = commands.Basic.Properties(headers={"a": [1, "b"]}, content_type="t")
    valid = bytearray(
        pamqp_frame.marshal(commands.Queue.Bind(queue="q", exchange="x", routing_key="k"), 1)
        + pamqp_frame.marshal(PamqpHeader(0, 3, props), 1)
        + pamqp_frame.marshal(ContentBody(b"abc"), 1)
    )
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(valid) - 1))
        valid[index] = data.draw(st.integers(0, 255))
    d = decoder()
    try:
        for _, _, payload in d.feed(bytes(valid)):
            if isinstance(payload, ContentHeader):
                properties_from_block(payload.properties)
    except AMQPError:
        pass


def test_a_header_value_amqp_cannot_carry_drops_the_headers_not_the_delivery() -> None:
    message = Message("ex", "rk", b"x", Properties(headers={"odd": object()}, app_id="a"))
    block = properties_block_of(message)
    assert core_properties(codec.decode_properties(block)) == Properties(app_id="a")
