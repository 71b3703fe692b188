"""Unit tests for the MQTT codec: spec byte examples, round trips and every validation rule."""

from __future__ import annotations

import pytest

from protocols.mqtt.codec import (
    RUN,
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
    Pubacks,
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
    encode_puback,
    encode_publish,
    valid_topic_filter,
    valid_topic_name,
)
from protocols.mqtt.properties import (
    PUBLISH,
    SUBSCRIBE,
    decode_properties,
    encode_properties,
    encode_varint,
    read_varint,
)

h = bytes.fromhex


def decoder(level: int = 4, **kwargs: int | bool) -> Decoder:
    dec = Decoder(**kwargs)
    dec.protocol_level = level
    return dec


def decode_one(data: bytes, level: int = 4) -> Packet:
    packets = decoder(level).feed(data)
    assert len(packets) == 1
    return packets[0]


def reason_of(data: bytes, level: int = 4, **kwargs: int) -> int:
    with pytest.raises(MQTTError) as info:
        decoder(level, **kwargs).feed(data)
    return info.value.reason_code


def frame(b0: int, body: bytes) -> bytes:
    return bytes((b0,)) + encode_varint(len(body)) + body


def connect_bytes(
    name: bytes = b"MQTT", level: int = 4, flags: int = 0x02, rest: bytes = b"\x00\x01c"
) -> bytes:
    """A CONNECT with keepalive 60; rest is (properties and) the payload."""
    body = len(name).to_bytes(2) + name + bytes((level, flags)) + b"\x00\x3c" + rest
    return frame(0x10, body)


# --- byte-exact examples --------------------------------------------------------------

CONNECT_V4 = h(
    "10 1c 0004 4d515454 04 ce 000a"  # MQTT, level 4, user+pw+will QoS 1+will+clean, 10 s
    "0002 6331"  # client id "c1"
    "0001 77 0003 627965"  # will topic "w", will payload "bye"
    "0001 75 0001 70"  # username "u", password "p"
)


def test_spec_connect_v311() -> None:
    dec = decoder()
    assert dec.feed(CONNECT_V4) == [
        Connect("MQTT", 4, True, 10, "c1", "u", b"p", Will("w", b"bye", 1, False, {}), {})
    ]
    assert encode(decode_one(CONNECT_V4)) == CONNECT_V4


def test_spec_connect_v5_sets_protocol_level() -> None:
    data = h(
        "10 19 0004 4d515454 05 c2 000a"  # MQTT 5, username+password+clean start
        "05 11 0000000a"  # properties: session expiry 10
        "0001 63 0001 75 0001 70"
    )
    publish = h("30 08 0003 612f62 00 6869")  # "a/b", empty property block, "hi"
    dec = decoder()
    connect, pub = dec.feed(data + publish)
    assert connect == Connect(
        "MQTT", 5, True, 10, "c", "u", b"p", None, {"session_expiry_interval": 10}
    )
    assert dec.protocol_level == 5
    assert pub == Publish("a/b", b"hi", 0, False, False, None, {})
    assert encode(connect) == data


def test_connect_mqisdp_level_3() -> None:
    data = connect_bytes(b"MQIsdp", 3)
    dec = decoder()
    assert dec.feed(data) == [Connect("MQIsdp", 3, True, 60, "c", None, None, None, {})]
    assert dec.protocol_level == 3


def test_spec_publish_v311() -> None:
    data = h("32 0a 0003 612f62 000a 010203")  # QoS 1 "a/b" id 10 payload 01 02 03
    assert decode_one(data) == Publish("a/b", b"\x01\x02\x03", 1, False, False, 10, {})
    assert encode_publish("a/b", b"\x01\x02\x03", 1, False, False, 10, None, 4) == data


def test_spec_publish_v5_properties() -> None:
    data = h(
        "3d 1c 0003 612f62 0001"  # QoS 2, retain, dup; id 1
        "13 01 01 02 0000003c 0b 01 0b 8002"  # UTF-8 payload, expiry 60, sub ids 1 and 256
        "26 0001 6b 0001 76"  # user property k=v
        "7a"
    )
    props = {
        "payload_format_indicator": 1,
        "message_expiry_interval": 60,
        "subscription_identifier": [1, 256],
        "user_property": [("k", "v")],
    }
    assert decode_one(data, 5) == Publish("a/b", b"z", 2, True, True, 1, props)
    assert encode_publish("a/b", b"z", 2, True, True, 1, props, 5) == data


def test_spec_subscribe_and_suback_v311() -> None:
    data = h("82 0e 000a 0003 612f62 01 0003 632f64 02")
    sub = Subscribe(10, [("a/b", SubscriptionOptions(1)), ("c/d", SubscriptionOptions(2))], {})
    assert decode_one(data) == sub
    assert encode(sub) == data
    suback = h("90 05 000a 01 02 80")
    assert decode_one(suback) == Suback(10, [1, 2, 0x80], {})


def test_subscribe_v5_options() -> None:
    data = h("82 09 0001 02 0b 07 0001 23 2d")  # sub id 7; "#" QoS 1, NL, RAP, RH 2
    options = SubscriptionOptions(1, no_local=True, retain_as_published=True, retain_handling=2)
    sub = Subscribe(1, [("#", options)], {"subscription_identifier": [7]})
    assert decode_one(data, 5) == sub
    assert encode(sub, 5) == data


def test_a_run_of_pubacks_is_read_as_one() -> None:
    """With ``runs``, a subscriber's round of plain PUBACKs decodes as one ``Pubacks``; the
    packet after the run (an ack with a reason code here) is its own.  Without, each
    PUBACK is a packet."""
    data = h("40 02 0001 40 02 0002 40 02 fffe 40 03 0004 10")
    assert decoder(5, runs=True).feed(data) == [Pubacks((1, 2, 0xFFFE)), Puback(4, 0x10, {})]
    each = [Puback(1, 0, {}), Puback(2, 0, {}), Puback(0xFFFE, 0, {}), Puback(4, 0x10, {})]
    assert decoder(5).feed(data) == each
    assert encode(Pubacks((1, 2, 0xFFFE))) == data[:12]


def test_a_stream_of_publishes_is_read_as_runs() -> None:
    """With ``runs``, a packet whose topic is known starts a run: it and the packets after
    it that repeat its head come as one ``Publishes`` (at most ``RUN`` after the first),
    with payloads, packet ids and (3.x) the packets as received; a packet of another size
    ends the run."""
    packets = [Publish("a/b", bytes([i]) * 4, 1, False, False, i + 1) for i in range(RUN + 3)]
    packets.append(Publish("a/b", b"longer", 1, False, False, 999))
    data = b"".join(encode(p) for p in packets)
    first, run, rest, last = decoder(4, runs=True).feed(data)  # the first makes a/b known
    assert first == packets[0] and last == packets[-1]
    run_packets = packets[1 : RUN + 2]
    assert (run.topic, run.qos, run.payloads) == ("a/b", 1, [p.payload for p in run_packets])
    assert run.packet_ids == [p.packet_id for p in run_packets] and len(rest.payloads) == 1
    assert run.raws == [encode(p) for p in run_packets]
    assert run.each() + rest.each() == packets[1:-1]


def test_short_forms() -> None:
    assert encode_puback(10) == h("40 02 000a")
    assert decode_one(h("40 02 000a"), 5) == Puback(10, 0, {})
    assert encode(Puback(10, 0x10), 5) == h("40 03 000a 10")
    assert decode_one(h("40 03 000a 10"), 5) == Puback(10, 0x10, {})
    assert encode(Puback(10, 0x10), 4) == h("40 02 000a")
    assert encode(Pubrel(3)) == h("62 02 0003")
    assert encode(Pingreq()) == h("c0 00")
    assert encode(Pingresp()) == h("d0 00")
    assert encode(Disconnect()) == h("e0 00")
    assert encode(Disconnect(), 5) == h("e0 00")
    assert decode_one(h("e0 00"), 5) == Disconnect(0, {})
    assert decode_one(h("e0 01 8e"), 5) == Disconnect(0x8E, {})
    assert encode(Disconnect(0x8E), 5) == h("e0 01 8e")
    assert decode_one(h("f0 00"), 5) == Auth(0, {})
    assert decode_one(h("b0 02 0005")) == Unsuback(5, [], {})


def test_auth_only_in_v5() -> None:
    with pytest.raises(ValueError):
        encode(Auth(), 4)


# --- round trips ----------------------------------------------------------------------

V4_PACKETS: list[Packet] = [
    Connect("MQTT", 4, True, 60, "client", None, None, None, {}),
    Connect("MQTT", 4, False, 0, "c", "user", b"pw", Will("w/t", b"bye", 2, True, {}), {}),
    Connack(False, 0, {}),
    Connack(True, 5, {}),
    Publish("a/b", b"hello", 0, True, False, None, {}),
    Publish("a/b", b"", 1, False, True, 7, {}),
    Publish("\u00e9t\u00e9/\U0001f600", b"y" * 300, 2, False, False, 65535, {}),
    Puback(1),
    Pubrec(2),
    Pubrel(3),
    Pubcomp(4),
    Subscribe(5, [("a/+", SubscriptionOptions(0)), ("#", SubscriptionOptions(2))], {}),
    Suback(5, [0, 2, 0x80], {}),
    Unsubscribe(6, ["a/+", "b"], {}),
    Unsuback(6, [], {}),
    Pingreq(),
    Pingresp(),
    Disconnect(),
]

V5_PACKETS: list[Packet] = [
    Connect(
        "MQTT",
        5,
        False,
        30,
        "",
        None,
        b"secret",
        Will("w", b"gone", 1, False, {"will_delay_interval": 5, "content_type": "text/plain"}),
        {
            "session_expiry_interval": 3600,
            "receive_maximum": 20,
            "maximum_packet_size": 1 << 20,
            "topic_alias_maximum": 10,
            "request_response_information": 1,
            "request_problem_information": 0,
            "authentication_method": "SCRAM-SHA-1",
            "authentication_data": b"\x00\x01",
            "user_property": [("a", "1"), ("a", "2"), ("b", "")],
        },
    ),
    Connack(
        True,
        0,
        {
            "assigned_client_identifier": "auto-1",
            "server_keep_alive": 120,
            "maximum_qos": 1,
            "retain_available": 0,
            "wildcard_subscription_available": 1,
            "subscription_identifier_available": 1,
            "shared_subscription_available": 0,
            "response_information": "resp/",
            "server_reference": "other",
            "reason_string": "welcome",
        },
    ),
    Publish(
        "t",
        b"{}",
        1,
        False,
        False,
        9,
        {
            "content_type": "application/json",
            "response_topic": "reply/here",
            "correlation_data": b"\xff\x00",
            "topic_alias": 3,
            "subscription_identifier": [1, 268_435_455],
        },
    ),
    Publish("", b"alias", 0, False, False, None, {"topic_alias": 3}),
    Puback(1, 0x10),
    Pubrec(2, 0x80, {"reason_string": "nope"}),
    Pubrel(3, 0, {"user_property": [("x", "y")]}),
    Pubcomp(4, 0x92),
    Subscribe(
        5,
        [("a/#", SubscriptionOptions(2, True, True, 1)), ("$share/g/b", SubscriptionOptions(0))],
        {"subscription_identifier": [42], "user_property": [("k", "v")]},
    ),
    Suback(5, [2, 0, 0x8F], {"reason_string": "partly"}),
    Unsubscribe(6, ["a/#"], {"user_property": [("k", "v")]}),
    Unsuback(6, [0, 0x11], {}),
    Pingreq(),
    Pingresp(),
    Disconnect(0x04, {"session_expiry_interval": 0, "server_reference": "x"}),
    Disconnect(),
    Auth(0x18, {"authentication_method": "SCRAM-SHA-1", "authentication_data": b"xyz"}),
    Auth(),
]

SAMPLES = [(4, p) for p in V4_PACKETS] + [(5, p) for p in V5_PACKETS]


@pytest.mark.parametrize(("level", "packet"), SAMPLES, ids=lambda v: type(v).__name__)
def test_round_trip(level: int, packet: Packet) -> None:
    data = encode(packet, level)
    assert decode_one(data, level) == packet


@pytest.mark.parametrize(("level", "packets"), [(4, V4_PACKETS), (5, V5_PACKETS)])
def test_stream_byte_by_byte_and_in_one_chunk(level: int, packets: list[Packet]) -> None:
    stream = b"".join(encode(p, level) for p in packets)
    assert decoder(level).feed(stream) == packets
    dec = decoder(level)
    one_by_one = [p for i in range(len(stream)) for p in dec.feed(stream[i : i + 1])]
    assert one_by_one == packets
    dec = decoder(level)
    assert dec.feed(bytearray(stream[:100])) + dec.feed(memoryview(stream)[100:]) == packets


def test_partial_large_packet_is_kept_until_complete() -> None:
    data = encode(Publish("big", b"x" * 100_000, 0, False, False, None, {}))
    dec = decoder()
    cut = len(data) - 10
    for start in range(0, cut, 1000):
        assert dec.feed(data[start : min(start + 1000, cut)]) == []
    assert dec.feed(data[cut:] + encode(Pingreq())) == [decode_one(data), Pingreq()]


def test_feed_in_uneven_chunks() -> None:
    stream = b"".join(encode(p) for p in V4_PACKETS) * 3
    dec = decoder()
    got: list[Packet] = []
    pos = 0
    for size in [1, 2, 3, 5, 7, 300, 1, 64] * 100:
        got += dec.feed(stream[pos : pos + size])
        pos += size
    assert got == V4_PACKETS * 3


# --- validation -----------------------------------------------------------------------

MALFORMED, PROTOCOL_ERROR = 0x81, 0x82

HEADER_CASES = [
    ("remaining length of 5 bytes", "30 ff ff ff ff 01", 4, MALFORMED),
    ("remaining length not minimal", "c0 80 00", 4, MALFORMED),
    ("packet type 0", "00 00", 4, MALFORMED),
    ("AUTH in 3.1.1", "f0 00", 4, MALFORMED),
    ("PINGREQ flags", "c1 00", 4, MALFORMED),
    ("PUBACK flags", "42 02 0001", 4, MALFORMED),
    ("PUBREL flags 0", "60 02 0001", 4, MALFORMED),
    ("SUBSCRIBE flags 0", "80 06 0001 0001 61 00", 4, MALFORMED),
    ("UNSUBSCRIBE flags 0", "a0 05 0001 0001 61", 4, MALFORMED),
    ("CONNECT flags", "11 00", 4, MALFORMED),
    ("PUBLISH QoS 3", "36 05 0001 61 0001", 4, MALFORMED),
    ("PUBLISH QoS 0 with DUP", "38 03 0001 61", 4, MALFORMED),
]

PUBLISH_CASES = [
    ("topic not UTF-8", "30 03 0001 ff", 4, MALFORMED),
    ("topic with surrogate", "30 05 0003 eda080", 4, MALFORMED),
    ("topic with U+0000", "30 04 0002 6100", 4, MALFORMED),
    ("topic length past end", "30 03 0005 61", 4, MALFORMED),
    ("no topic length", "30 01 00", 4, MALFORMED),
    ("topic with +", "30 05 0003 612f2b", 4, 0x90),
    ("topic with #", "30 03 0001 23", 5, 0x90),
    ("empty topic in 3.1.1", "30 02 0000", 4, 0x90),
    ("empty topic without alias in 5", "30 03 0000 00", 5, PROTOCOL_ERROR),
    ("packet id 0", "32 05 0001 61 0000", 4, PROTOCOL_ERROR),
    ("packet id truncated", "32 04 0001 61 00", 4, MALFORMED),
    ("topic alias 0", "30 06 0000 03 23 0000", 5, 0x94),
    ("no property length in 5", "30 03 0001 61", 5, MALFORMED),
]

PROPERTY_CASES = [
    ("unknown property", "40 05 0001 00 01 7f", 5, MALFORMED),
    ("property length past end", "40 05 0001 00 05 1f", 5, MALFORMED),
    ("truncated property value", "40 06 0001 00 02 1f 00", 5, MALFORMED),
    ("property not allowed in PUBACK", "40 08 0001 00 04 03 0001 61", 5, MALFORMED),
    ("content type twice", "30 0c 0001 61 08 03 0001 62 03 0001 63", 5, PROTOCOL_ERROR),
    ("subscription identifier 0", "30 06 0001 61 02 0b 00", 5, PROTOCOL_ERROR),
    ("payload format 2", "30 06 0001 61 02 01 02", 5, PROTOCOL_ERROR),
    ("property varint too long", "30 0a 0001 61 06 0b ff ff ff ff 01", 5, MALFORMED),
    ("reason string not UTF-8", "40 08 0001 00 04 1f 0001 c3", 5, MALFORMED),
    ("two sub ids in SUBSCRIBE", "82 0b 0001 04 0b 01 0b 02 0001 61 00", 5, PROTOCOL_ERROR),
    ("AUTH trailing bytes", "f0 03 18 00 00", 5, MALFORMED),
]

SUBSCRIBE_CASES = [
    ("SUBSCRIBE without topics", "82 02 0001", 4, PROTOCOL_ERROR),
    ("SUBSCRIBE without topics in 5", "82 03 0001 00", 5, PROTOCOL_ERROR),
    ("SUBSCRIBE packet id 0", "82 06 0000 0001 61 00", 4, PROTOCOL_ERROR),
    ("SUBSCRIBE reserved option bits", "82 06 0001 0001 61 04", 4, MALFORMED),
    ("SUBSCRIBE reserved option bits 5", "82 07 0001 00 0001 61 40", 5, MALFORMED),
    ("SUBSCRIBE QoS 3", "82 06 0001 0001 61 03", 4, MALFORMED),
    ("SUBSCRIBE QoS 3 in 5", "82 07 0001 00 0001 61 03", 5, PROTOCOL_ERROR),
    ("SUBSCRIBE retain handling 3", "82 07 0001 00 0001 61 30", 5, PROTOCOL_ERROR),
    ("SUBSCRIBE filter without options", "82 05 0001 0001 61", 4, MALFORMED),
    ("SUBSCRIBE filter not UTF-8", "82 06 0001 0001 ff 00", 4, MALFORMED),
    ("UNSUBSCRIBE without filters", "a2 02 0001", 4, PROTOCOL_ERROR),
    ("UNSUBSCRIBE packet id 0", "a2 05 0000 0001 61", 4, PROTOCOL_ERROR),
    ("UNSUBSCRIBE truncated filter", "a2 05 0001 0002 61", 4, MALFORMED),
]

SHORT_CASES = [
    ("PUBACK too short", "40 01 00", 4, MALFORMED),
    ("PUBACK with reason in 3.1.1", "40 03 0001 00", 4, MALFORMED),
    ("CONNACK too short", "20 01 00", 4, MALFORMED),
    ("CONNACK too long", "20 03 00 00 00", 4, MALFORMED),
    ("CONNACK reserved flags", "20 02 02 00", 4, MALFORMED),
    ("SUBACK too short", "90 01 00", 4, MALFORMED),
    ("UNSUBACK too long in 3.1.1", "b0 03 0001 00", 4, MALFORMED),
    ("PINGREQ with body", "c0 01 00", 4, MALFORMED),
    ("DISCONNECT with body in 3.1.1", "e0 01 00", 4, MALFORMED),
    ("CONNECT without header", "10 02 0004", 4, MALFORMED),
]

CASES = HEADER_CASES + PUBLISH_CASES + PROPERTY_CASES + SUBSCRIBE_CASES + SHORT_CASES


@pytest.mark.parametrize(
    ("data", "level", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rejects(data: str, level: int, code: int) -> None:
    assert reason_of(h(data), level) == code


CONNECT_CASES = [
    ("unknown protocol name", connect_bytes(name=b"MQTX"), MALFORMED),
    ("unknown protocol level", connect_bytes(level=6), 0x84),
    ("MQIsdp with level 4", connect_bytes(name=b"MQIsdp", level=4), 0x84),
    ("MQTT with level 3", connect_bytes(level=3), 0x84),
    ("reserved flag", connect_bytes(flags=0x03), MALFORMED),
    ("will QoS without will", connect_bytes(flags=0x0A), MALFORMED),
    ("will retain without will", connect_bytes(flags=0x22), MALFORMED),
    ("will QoS 3", connect_bytes(flags=0x1E, rest=h("0001 63 0001 77 0000")), MALFORMED),
    ("password without username", connect_bytes(flags=0x42, rest=h("0001 63 0001 70")), MALFORMED),
    ("empty client id, no clean session", connect_bytes(flags=0, rest=h("0000")), 0x85),
    ("will topic with wildcard", connect_bytes(flags=0x06, rest=h("0001 63 0001 23 0000")), 0x90),
    ("missing will payload", connect_bytes(flags=0x06, rest=h("0001 63 0001 77")), MALFORMED),
    ("trailing bytes", connect_bytes(rest=h("0001 63 00")), MALFORMED),
    ("client id truncated", connect_bytes(rest=h("0005 63")), MALFORMED),
    ("v5 receive maximum 0", connect_bytes(level=5, rest=h("03 21 0000 0001 63")), PROTOCOL_ERROR),
    (
        "v5 maximum packet size 0",
        connect_bytes(level=5, rest=h("05 27 00000000 0001 63")),
        PROTOCOL_ERROR,
    ),
    (
        "v5 will property in CONNECT",
        connect_bytes(level=5, rest=h("05 18 00000001 0001 63")),
        MALFORMED,
    ),
    (
        "v5 request problem information 2",
        connect_bytes(level=5, rest=h("02 17 02 0001 63")),
        PROTOCOL_ERROR,
    ),
]


@pytest.mark.parametrize(
    ("data", "code"), [c[1:] for c in CONNECT_CASES], ids=[c[0] for c in CONNECT_CASES]
)
def test_rejects_connect(data: bytes, code: int) -> None:
    assert reason_of(data) == code


def test_connect_error_after_level_keeps_level() -> None:
    dec = decoder()
    with pytest.raises(MQTTError):
        dec.feed(connect_bytes(level=5, rest=h("03 21 0000 0001 63")))
    assert dec.protocol_level == 5


def test_v5_allows_password_without_username_and_empty_client_id() -> None:
    packet = decode_one(connect_bytes(level=5, flags=0x40, rest=h("00 0000 0001 70")))
    assert packet == Connect("MQTT", 5, False, 60, "", None, b"p", None, {})


def test_packet_too_large_detected_from_header() -> None:
    dec = decoder(max_packet_size=10)
    assert dec.feed(h("30 08")) == []  # 10 bytes in total: fits
    with pytest.raises(MQTTError) as info:
        decoder(max_packet_size=10).feed(h("30 09"))
    assert info.value.reason_code == 0x95
    with pytest.raises(MQTTError) as info:
        decoder(max_packet_size=1000).feed(h("30 ff ff 7f"))
    assert info.value.reason_code == 0x95


def test_incomplete_remaining_length_waits() -> None:
    dec = decoder()
    assert dec.feed(h("30 80 80")) == []
    assert dec.feed(h("01")) == []
    with pytest.raises(MQTTError):
        decoder().feed(h("30 80 80 80 80"))


def test_error_is_sticky_and_carries_earlier_packets() -> None:
    dec = decoder()
    good = encode(Pingreq())
    with pytest.raises(MQTTError) as info:
        dec.feed(good + good + h("00 00"))
    assert info.value.packets == [Pingreq(), Pingreq()]
    with pytest.raises(MQTTError):
        dec.feed(good)


def test_user_properties_keep_order_and_duplicates() -> None:
    pairs = [("b", "2"), ("a", "1"), ("b", "2")]
    block = encode_properties({"user_property": pairs})
    assert decode_properties(block, 0, PUBLISH) == ({"user_property": pairs}, len(block))


def test_decode_properties_respects_end() -> None:
    block = encode_properties({"content_type": "text"})
    with pytest.raises(MQTTError):
        decode_properties(block, 0, PUBLISH, len(block) - 1)
    with pytest.raises(MQTTError) as info:
        decode_properties(encode_properties({"topic_alias": 1}), 0, SUBSCRIBE)
    assert info.value.reason_code == MALFORMED


def test_encode_properties_rejects_unknown_names() -> None:
    with pytest.raises(ValueError):
        encode_properties({"no_such_property": 1})


@pytest.mark.parametrize("value", [0, 1, 127, 128, 16_383, 16_384, 2_097_151, 268_435_455])
def test_varint_round_trip(value: int) -> None:
    data = encode_varint(value)
    assert read_varint(data, 0, len(data)) == (value, len(data))


# --- topics ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "valid"),
    [("a/b", True), ("/", True), ("$SYS/x", True), ("", False), ("a/+", False)]
    + [("#", False), ("a\x00b", False), (" ", True)],
)
def test_valid_topic_name(topic: str, valid: bool) -> None:
    assert valid_topic_name(topic) is valid


@pytest.mark.parametrize(
    ("topic_filter", "valid"),
    [
        ("a/b", True),
        ("#", True),
        ("+", True),
        ("a/#", True),
        ("+/+/#", True),
        ("a//+", True),
        ("/", True),
        ("", False),
        ("a/#/b", False),
        ("a#", False),
        ("a/b#", False),
        ("a+/b", False),
        ("a/+b", False),
        ("##", False),
        ("a\x00", False),
    ],
)
def test_valid_topic_filter(topic_filter: str, valid: bool) -> None:
    assert valid_topic_filter(topic_filter) is valid
