"""The native protocol's frame codecs: round trips of payloads and properties in both
subprotocols, and malformed input that must become FrameError and nothing else."""

from __future__ import annotations

import datetime
import decimal

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.message import Properties
from protocols.websocket.frames import (
    JSON,
    MSGPACK,
    FrameError,
    JsonCodec,
    MsgpackCodec,
    codec_for,
    payload_of,
    properties_frame,
    properties_of,
    put_payload,
)

CODECS = [JsonCodec(), MsgpackCodec()]


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@given(body=st.binary(max_size=300))
def test_a_delivered_payload_reads_back_as_the_same_bytes(codec, body: bytes) -> None:
    frame: dict = {"op": "message"}
    put_payload(frame, body, codec.binary)
    assert payload_of(codec.decode(codec.encode(frame))) == body


@given(text=st.text(max_size=100))
def test_utf8_bodies_are_strings_in_json(text: str) -> None:
    frame: dict = {"op": "message"}
    put_payload(frame, text.encode(), binary=False)
    assert frame["payload"] == text and "encoding" not in frame


def test_other_bodies_are_base64_in_json_and_binary_in_msgpack() -> None:
    frame: dict = {"op": "message"}
    put_payload(frame, b"\xff\xfe", binary=False)
    assert frame == {"op": "message", "payload": "//4=", "encoding": "base64"}
    frame = {"op": "message"}
    put_payload(frame, b"\xff\xfe", binary=True)
    assert frame["payload"] == b"\xff\xfe"


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_decode_to_a_frame_or_frame_error(codec, data: bytes) -> None:
    try:
        frame = codec.decode(data)
    except FrameError:
        return
    assert isinstance(frame, dict) and isinstance(frame["op"], str)


@pytest.mark.parametrize(
    "data",
    ["{", "[1]", '{"id": 1}', '{"op": 5}', '"text"', "[" * 100_000],
)
def test_malformed_json_frames(data: str) -> None:
    with pytest.raises(FrameError):
        JsonCodec().decode(data)


def test_msgpack_takes_binary_frames_only() -> None:
    with pytest.raises(FrameError):
        MsgpackCodec().decode('{"op": "ping"}')
    with pytest.raises(FrameError):
        MsgpackCodec().decode(b"\x92\x01\x02")  # an array, not a map


def test_codec_by_subprotocol() -> None:
    assert codec_for(JSON).name == JSON
    assert codec_for(MSGPACK).name == MSGPACK


def test_properties_are_checked() -> None:
    ok = {"content_type": "a/b", "priority": 3, "headers": {"k": [1, "x"]}, "expiration": "60"}
    assert properties_of({"properties": ok}) == ok
    for bad in (
        {"priority": 300},
        {"delivery_mode": True},
        {"content_type": 5},
        {"headers": []},
        {"expiration": "soon"},
        {"colour": "blue"},
    ):
        with pytest.raises(FrameError):
            properties_of({"properties": bad})


def test_payload_encodings() -> None:
    assert payload_of({"payload": "aGk=", "encoding": "base64"}) == b"hi"
    for bad in ({"payload": "a", "encoding": "rot13"}, {"payload": "!", "encoding": "base64"}):
        with pytest.raises(FrameError):
            payload_of(bad)
    with pytest.raises(FrameError):
        payload_of({"payload": {"an": "object"}})


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_header_values_without_a_frame_type_are_written_as_text(codec) -> None:
    when = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    props = Properties(
        headers={"when": when, "price": decimal.Decimal("1.50"), "raw": b"ok"}, cluster_id="c"
    )
    frame = codec.decode(codec.encode({"op": "message", "properties": properties_frame(props)}))
    headers = frame["properties"]["headers"]
    assert headers["when"] == when.isoformat() and headers["price"] == "1.50"
    assert headers["raw"] in ("ok", b"ok")
    assert "cluster_id" not in frame["properties"]


#: runs of bodies of the sizes around msgpack's bin 8/16/32 boundaries (cheap to make: one
#: byte repeated)
sizes = st.sampled_from([0, 1, 255, 256, 65_535, 65_536])
bodies = st.lists(st.tuples(sizes, st.integers(0, 255)), min_size=1, max_size=3).map(
    lambda specs: [bytes([fill]) * size for size, fill in specs]
)
topics = st.none() | st.text(max_size=20)
properties = st.fixed_dictionaries(
    {},
    optional={
        "content_type": st.text(max_size=10),
        "headers": st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1)),
    },
)


@given(topics, properties, st.lists(bodies, min_size=1, max_size=3))
def test_msgpack_delivery_frames_are_what_msgpack_packs(topic, props, runs) -> None:
    codec = MsgpackCodec()
    for run in runs:
        expected = []
        for body in run:
            frame = {"op": "message"}
            if topic is not None:
                frame["topic"] = topic
            frame |= {"payload": body, "properties": props}
            expected.append(msgpack.packb(frame, use_bin_type=True))
        assert codec.message_frames(topic, props, run) == expected


@given(st.text(max_size=20), st.lists(st.binary(max_size=70_000), min_size=1, max_size=4))
def test_a_learned_publish_layout_reads_like_msgpack(topic: str, payloads: list[bytes]) -> None:
    codec = MsgpackCodec()
    first = msgpack.packb({"op": "publish", "topic": topic, "payload": payloads[0]})
    codec.learn_plain(first, codec.decode(first))
    for payload in payloads:
        data = msgpack.packb({"op": "publish", "topic": topic, "payload": payload})
        assert codec.plain_publish(data) == (topic, payload)


@given(st.binary(max_size=300))
def test_anything_else_is_left_to_msgpack(data: bytes) -> None:
    """After learning, any bytes are either read as msgpack would read them or not at all."""
    codec = MsgpackCodec()
    first = msgpack.packb({"op": "publish", "topic": "t", "payload": b"x"})
    codec.learn_plain(first, codec.decode(first))
    prefix = first[:-3]
    for candidate in (data, prefix + data):
        known = codec.plain_publish(candidate)
        if known is not None:
            assert msgpack.unpackb(candidate) == {
                "op": "publish",
                "topic": known[0],
                "payload": known[1],
            }


def test_other_layouts_are_not_learned() -> None:
    codec = MsgpackCodec()
    payload_first = msgpack.packb({"payload": b"x", "op": "publish", "topic": "t"})
    codec.learn_plain(payload_first, codec.decode(payload_first))
    assert codec.plain_publish(payload_first) is None
    text = msgpack.packb({"op": "publish", "topic": "t", "payload": "text"})
    codec.learn_plain(text, codec.decode(text))
    assert codec.plain_publish(text) is None
    assert JsonCodec().plain_publish('{"op":"publish","topic":"t","payload":"x"}') is None
