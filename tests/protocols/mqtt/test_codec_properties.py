"""Property tests: hostile input only ever yields MQTTError; valid packets round-trip."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.mqtt.codec import (
    Auth,
    Connack,
    Connect,
    Decoder,
    Disconnect,
    MQTTError,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    SubscriptionOptions,
    Unsuback,
    Unsubscribe,
    Will,
    encode,
)
from protocols.mqtt.properties import (
    AUTH,
    BINARY,
    BYTE,
    CONNACK,
    CONNECT,
    DISCONNECT,
    MAX_VARINT,
    PAIR,
    PROPERTIES,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    STR,
    SUBACK,
    SUBSCRIBE,
    U16,
    U32,
    UNSUBACK,
    UNSUBSCRIBE,
    VARINT,
    WILL,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
topic_names = text.filter(lambda t: t and "+" not in t and "#" not in t)
packet_ids = st.integers(1, 0xFFFF)
byte = st.integers(0, 255)


def _value(kind: int, limits: tuple[int, int, int] | None) -> st.SearchStrategy:
    """A valid value for one property data type."""
    if kind == STR:
        return text
    if kind == BINARY:
        return st.binary(max_size=12)
    if kind == PAIR:
        return st.tuples(text, text)
    top = {BYTE: 0xFF, U16: 0xFFFF, U32: 0xFFFFFFFF, VARINT: MAX_VARINT}[kind]
    low, high = (limits[0], min(limits[1], top)) if limits else (0, top)
    return st.integers(low, high)


def properties(kind: int) -> st.SearchStrategy[dict]:
    """Any valid property dict for a packet kind, drawn from the property table itself."""
    optional = {}
    for name, data_type, allowed, limits in PROPERTIES.values():
        if not allowed >> kind & 1:
            continue
        value = _value(data_type, limits)
        if name == "user_property":
            value = st.lists(value, min_size=1, max_size=3)
        elif name == "subscription_identifier":
            value = st.lists(value, min_size=1, max_size=3 if kind == PUBLISH else 1)
        optional[name] = value
    return st.fixed_dictionaries({}, optional=optional)


def no_properties(kind: int) -> st.SearchStrategy[dict]:
    return st.just({})


@st.composite
def connects(draw: st.DrawFn, level: int) -> Connect:
    props = properties if level == 5 else no_properties
    clean = draw(st.booleans())
    client_id = draw(text if clean or level == 5 else text.filter(bool))
    username = draw(st.none() | text)
    password = draw(st.none() | st.binary(max_size=8))
    if level != 5 and username is None:
        password = None
    will = draw(
        st.none()
        | st.builds(
            Will, topic_names, st.binary(max_size=20), st.integers(0, 2), st.booleans(), props(WILL)
        )
    )
    name = "MQIsdp" if level == 3 else "MQTT"
    keepalive = draw(st.integers(0, 0xFFFF))
    return Connect(
        name, level, clean, keepalive, client_id, username, password, will, draw(props(CONNECT))
    )


def options(level: int) -> st.SearchStrategy[SubscriptionOptions]:
    if level != 5:
        return st.builds(SubscriptionOptions, st.integers(0, 2))
    return st.builds(
        SubscriptionOptions, st.integers(0, 2), st.booleans(), st.booleans(), st.integers(0, 2)
    )


def packets(level: int) -> st.SearchStrategy[Packet]:
    """Every packet type the given protocol level can carry, with valid field values."""
    v5 = level == 5
    props = properties if v5 else no_properties
    reason = byte if v5 else st.just(0)
    codes = st.lists(byte, max_size=5)
    acks = [
        st.builds(cls, packet_ids, reason, props(kind))
        for cls, kind in ((Puback, PUBACK), (Pubrec, PUBREC), (Pubrel, PUBREL), (Pubcomp, PUBCOMP))
    ]
    choices = [
        connects(level),
        st.builds(Connack, st.booleans(), byte, props(CONNACK)),
        st.builds(
            Publish,
            topic_names,
            st.binary(max_size=300),
            st.just(0),
            st.booleans(),
            st.just(False),
            st.none(),
            props(PUBLISH),
        ),
        st.builds(
            Publish,
            topic_names,
            st.binary(max_size=300),
            st.integers(1, 2),
            st.booleans(),
            st.booleans(),
            packet_ids,
            props(PUBLISH),
        ),
        *acks,
        st.builds(
            Subscribe,
            packet_ids,
            st.lists(st.tuples(text, options(level)), min_size=1, max_size=4),
            props(SUBSCRIBE),
        ),
        st.builds(Suback, packet_ids, codes, props(SUBACK)),
        st.builds(
            Unsubscribe, packet_ids, st.lists(text, min_size=1, max_size=4), props(UNSUBSCRIBE)
        ),
        st.builds(Unsuback, packet_ids, codes if v5 else st.just([]), props(UNSUBACK)),
        st.builds(Pingreq),
        st.builds(Pingresp),
        st.builds(Disconnect, reason, props(DISCONNECT)),
    ]
    if v5:
        choices.append(st.builds(Auth, byte, props(AUTH)))
    return st.one_of(choices)


def fresh_decoder(level: int) -> Decoder:
    dec = Decoder()
    dec.protocol_level = 5 if level == 5 else 4
    return dec


def feed_in_chunks(dec: Decoder, data: bytes, cuts: list[int]) -> list[Packet]:
    """Feed data split at the given offsets; an MQTTError is the only allowed failure."""
    got: list[Packet] = []
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    for start, stop in zip(bounds, bounds[1:], strict=False):
        got += dec.feed(data[start:stop])
    return got


@SETTINGS
@given(st.sampled_from([4, 5]), st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_arbitrary_bytes_only_raise_mqtt_error(level: int, data: bytes, cuts: list[int]) -> None:
    try:
        feed_in_chunks(fresh_decoder(level), data, cuts)
    except MQTTError as error:
        assert 0x80 <= error.reason_code <= 0xFF


@SETTINGS
@given(
    st.sampled_from([3, 4, 5]).flatmap(lambda lvl: st.tuples(st.just(lvl), packets(lvl))),
    st.lists(st.tuples(st.integers(0, 10_000), byte), min_size=1, max_size=4),
    st.integers(0, 10_000),
    st.lists(st.integers(0, 10_000), max_size=5),
)
def test_mutated_packets_only_raise_mqtt_error(
    level_packet: tuple[int, Packet], flips: list[tuple[int, int]], cut: int, cuts: list[int]
) -> None:
    """Corrupting valid encodings reaches deep into every packet parser."""
    level, packet = level_packet
    data = bytearray(encode(packet, level))
    for index, value in flips:
        data[index % len(data)] = value
    data = data[: max(1, cut % (len(data) + 1))]
    try:
        feed_in_chunks(fresh_decoder(level), bytes(data), cuts)
    except MQTTError as error:
        assert 0x80 <= error.reason_code <= 0xFF


@SETTINGS
@given(st.lists(packets(4), min_size=1, max_size=5), st.lists(st.integers(0, 2000), max_size=6))
def test_v311_packets_round_trip(batch: list[Packet], cuts: list[int]) -> None:
    data = b"".join(encode(p, 4) for p in batch)
    assert feed_in_chunks(fresh_decoder(4), data, cuts) == batch


@SETTINGS
@given(st.lists(packets(5), min_size=1, max_size=5), st.lists(st.integers(0, 2000), max_size=6))
def test_v5_packets_round_trip(batch: list[Packet], cuts: list[int]) -> None:
    data = b"".join(encode(p, 5) for p in batch)
    assert feed_in_chunks(fresh_decoder(5), data, cuts) == batch


@SETTINGS
@given(packets(3))
def test_mqtt_31_packets_round_trip(packet: Packet) -> None:
    assert fresh_decoder(3).feed(encode(packet, 3)) == [packet]


@SETTINGS
@given(st.lists(packets(5), min_size=1, max_size=4), st.lists(st.integers(0, 4000), max_size=6))
def test_v5_repeated_packets_decode_alike(batch: list[Packet], cuts: list[int]) -> None:
    """The second and third time a publisher sends a packet, the decoder's caches (topic,
    property block) take the fast path: it must decode exactly as the first time."""
    data = b"".join(encode(p, 5) for p in batch) * 3
    assert feed_in_chunks(fresh_decoder(5), data, cuts) == batch * 3


@SETTINGS
@given(packets(5), st.lists(st.tuples(st.integers(0, 10_000), byte), min_size=1, max_size=4))
def test_v5_mutated_repeats_only_raise_mqtt_error(
    packet: Packet, flips: list[tuple[int, int]]
) -> None:
    """A corrupted copy of a packet the decoder has cached parts of."""
    good = encode(packet, 5)
    bad = bytearray(good)
    for index, value in flips:
        bad[index % len(bad)] = value
    try:
        feed_in_chunks(fresh_decoder(5), good + bytes(bad) + good, [])
    except MQTTError as error:
        assert 0x80 <= error.reason_code <= 0xFF


#: publishes of a steady stream: few topics, sizes and property blocks, so that packet
#: heads repeat and the decoder recognises followers by their head alone
stream_publishes = st.builds(
    lambda topic, size, qos, packet_id, user: (topic, size, qos, packet_id, user),
    st.sampled_from(["a", "a/b", "sensors/room1/temp"]),
    st.sampled_from([0, 1, 60, 200]),
    st.sampled_from([0, 1]),
    st.integers(0, 3),
    st.sampled_from([None, [("k", "v")]]),
)


def _stream(level: int, items: list[tuple]) -> list[Packet]:
    return [
        Publish(
            topic,
            bytes([size % 251]) * size,
            qos,
            False,
            False,
            packet_id + 1 if qos else None,
            {"user_property": user} if user and level == 5 else {},
        )
        for topic, size, qos, packet_id, user in items
    ]


@SETTINGS
@given(
    st.sampled_from([4, 5]),
    st.lists(stream_publishes, min_size=1, max_size=12),
    st.sampled_from([1, 2, 3, 4, 70]),  # 70: past a run's most (RUN)
    st.lists(st.integers(0, 4000), max_size=6),
)
def test_publish_streams_decode_alike(
    level: int, items: list[tuple], repeat: int, cuts: list[int]
) -> None:
    """Runs of publishes that share topic, size and properties decode exactly as each
    would alone, however the stream is cut."""
    batch = [p for p in _stream(level, items) for _ in range(repeat)]
    data = b"".join(encode(p, level) for p in batch)
    got = feed_in_chunks(fresh_decoder(level), data, cuts)
    assert got == batch
    assert [p.raw for p in got if p.raw is not None] == [
        encode(p, level) for p in got if p.raw is not None
    ]


@SETTINGS
@given(
    st.sampled_from([4, 5]),
    st.lists(stream_publishes, min_size=2, max_size=8),
    st.lists(st.tuples(st.integers(0, 10_000), byte), min_size=1, max_size=3),
)
def test_corrupted_publish_streams_only_raise_mqtt_error(
    level: int, items: list[tuple], flips: list[tuple[int, int]]
) -> None:
    data = bytearray(b"".join(encode(p, level) for p in _stream(level, items) * 3))
    for index, value in flips:
        data[index % len(data)] = value
    try:
        fresh_decoder(level).feed(bytes(data))
    except MQTTError as error:
        assert 0x80 <= error.reason_code <= 0xFF


@SETTINGS
@given(
    st.sampled_from([4, 5]),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 0xFFFF)), min_size=1, max_size=40),
    st.lists(st.integers(0, 400), max_size=6),
)
def test_puback_runs_decode_alike(level: int, acks: list[tuple[int, int]], cuts: list[int]) -> None:
    """A subscriber's round of PUBACKs (read as one run) decodes as each would alone,
    with other packets and MQTT 5 reason codes in between (an ack's packet id 0 matches
    nothing and is let through, as before runs were read at once)."""
    batch: list[Packet] = []
    for kind, packet_id in acks:
        if kind == 3:
            batch.append(Pingreq())
        elif kind == 2 and level == 5:
            batch.append(Puback(packet_id, 0x10, {}))
        else:
            batch.append(Puback(packet_id, 0, {}))
    data = b"".join(encode(p, level) for p in batch)
    assert feed_in_chunks(fresh_decoder(level), data, cuts) == batch


@SETTINGS
@given(st.sampled_from([4, 5]), st.integers(0, 20), st.integers(1, 20))
def test_zero_packet_id_ends_a_publish_run_with_an_error(
    level: int, before: int, after: int
) -> None:
    """Packet id 0 inside a run of QoS 1 publishes: the packets before it are decoded,
    then the protocol error is raised."""
    props = {"user_property": [("k", "v")]} if level == 5 else {}
    good = [Publish("a/b", b"x" * 8, 1, False, False, i + 1, props) for i in range(before)]
    packet = encode(Publish("a/b", b"x" * 8, 1, False, False, 0xFFFF, props), level)
    bad = packet.replace(b"\xff\xff", b"\x00\x00", 1)
    tail = b"".join(encode(p, level) for p in good[:after])
    data = b"".join(encode(p, level) for p in good) + bad + tail
    try:
        fresh_decoder(level).feed(data)
    except MQTTError as error:
        assert error.packets == good
        assert 0x80 <= error.reason_code <= 0xFF
    else:
        raise AssertionError("packet id 0 was accepted")
