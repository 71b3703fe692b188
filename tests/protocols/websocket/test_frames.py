"""The native protocol's frame codecs: round trips of payloads and properties in both
subprotocols, and malformed input that must become FrameError and nothing else."""

from __future__ import annotations

import datetime
import decimal

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
