"""The hand-written WebSocket data-frame path against wsproto, the reference: what a wsproto
client sends, the reader parses alike (however the bytes are split); what ``data_frame``
builds, a wsproto client reads back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto import Connection, ConnectionType
from wsproto.events import BytesMessage, Ping, TextMessage

from broker.http.frames import (
    BadText,
    DataFrameReader,
    FrameTooBig,
    NotBinary,
    data_frame,
    data_frames,
    unmask,
)

messages = st.lists(st.binary(max_size=70_000) | st.text(max_size=300), min_size=1, max_size=8)


def client_frames(*items: bytes | str | Ping) -> bytes:
    client = Connection(ConnectionType.CLIENT)
    out = b""
    for item in items:
        if isinstance(item, Ping):
            out += client.send(item)
        elif isinstance(item, str):
            out += client.send(TextMessage(data=item))
        else:
            out += client.send(BytesMessage(data=item))
    return out


def payloads(events: list[BytesMessage | TextMessage]) -> list[bytes | str]:
    return [bytes(e.data) if isinstance(e, BytesMessage) else e.data for e in events]


binary_messages = st.lists(st.binary(max_size=70_000), min_size=1, max_size=8)


@given(messages, st.lists(st.integers(min_value=1, max_value=5000), max_size=20))
def test_client_frames_parse_alike_however_split(sent: list[bytes | str], cuts: list[int]) -> None:
    data = client_frames(*sent)
    reader = DataFrameReader(max_size=1 << 20)
    got: list[bytes | str] = []
    pos = 0
    for cut in cuts:
        got += reader.feed(data[pos : pos + cut])
        pos += cut
    got += reader.feed(data[pos:])
    assert got == sent
    assert reader.handed_over is None


@given(binary_messages, st.lists(st.integers(min_value=1, max_value=5000), max_size=20))
def test_binary_frames_read_as_one_stream_however_split(sent: list[bytes], cuts: list[int]) -> None:
    data = client_frames(*sent)
    reader = DataFrameReader(max_size=1 << 20)
    got = b""
    pos = 0
    for cut in cuts:
        got += reader.feed_stream(data[pos : pos + cut])
        pos += cut
    got += reader.feed_stream(data[pos:])
    assert got == b"".join(sent)


#: runs of messages of one type and length (what the reader unmasks as one array), with
#: lengths on both sides of the 7-bit, 16-bit and 64-bit length encodings
runs = st.lists(
    st.tuples(
        st.sampled_from([0, 1, 5, 125, 126, 127, 300, 65_535, 65_536]),
        st.integers(min_value=1, max_value=20),
        st.booleans(),
        st.randoms(use_true_random=False),
    ),
    min_size=1,
    max_size=4,
)


def _run_messages(spec: list) -> list[bytes | str]:
    sent: list[bytes | str] = []
    for length, count, text, rng in spec:
        for _ in range(count if length < 65_535 else min(count, 9)):
            if text:
                sent.append("".join(rng.choice("aé ") for _ in range(length // 2)))
            else:
                sent.append(rng.randbytes(length))
    return sent


@given(runs, st.lists(st.integers(min_value=1, max_value=70_000), max_size=6))
def test_runs_of_like_frames_parse_alike_however_split(spec: list, cuts: list[int]) -> None:
    sent = _run_messages(spec)
    data = client_frames(*sent)
    reader = DataFrameReader(max_size=1 << 20)
    got: list[bytes | str] = []
    pos = 0
    for cut in cuts:
        got += reader.feed(data[pos : pos + cut])
        pos += cut
    got += reader.feed(data[pos:])
    assert got == sent
    stream = DataFrameReader(max_size=1 << 20)
    binary = [m for m in sent if isinstance(m, bytes)]
    assert stream.feed_stream(client_frames(*binary)) == b"".join(binary)


def test_a_text_frame_is_not_stream_data() -> None:
    with pytest.raises(NotBinary):
        DataFrameReader(max_size=1024).feed_stream(client_frames(b"one", "two"))


@given(messages)
def test_server_frames_read_back_by_wsproto(sent: list[bytes | str]) -> None:
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(b"".join(data_frame(m) for m in sent))
    assert payloads(list(client.events())) == sent


@given(messages | runs.map(_run_messages))
def test_joined_server_frames_read_back_by_wsproto(sent: list[bytes | str]) -> None:
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(data_frames(sent))
    assert payloads(list(client.events())) == sent


def test_a_control_frame_hands_the_rest_to_wsproto() -> None:
    data = client_frames(b"one", Ping(payload=b"p"), b"two")
    reader = DataFrameReader(max_size=1024)
    assert reader.feed(data) == [b"one"]
    assert reader.handed_over == data[len(client_frames(b"one")) :]


def test_limits_and_bad_text() -> None:
    with pytest.raises(FrameTooBig):
        DataFrameReader(max_size=10).feed(client_frames(b"x" * 11))
    bad = bytearray(client_frames("ok"))
    bad[-2:] = unmask(b"\xff\xfe", bytes(bad[-6:-2]))  # the masked payload, now not UTF-8
    with pytest.raises(BadText):
        DataFrameReader(max_size=10).feed(bytes(bad))
