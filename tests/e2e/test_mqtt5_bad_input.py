"""MQTT 5 bad input: malformed or forbidden properties get the right reason code, in a
DISCONNECT (or a CONNACK for CONNECT), and only the offending connection is closed; and
the reason codes of ordinary acknowledgements."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from .brokers import ON_MOSQUITTO, BrokerProcess, skip_on_mosquitto
from .clients import Clients
from .mqtt5 import (
    MALFORMED_PACKET,
    NO_MATCHING_SUBSCRIBERS,
    NO_SUBSCRIPTION_EXISTED,
    NOT_AUTHORIZED,
    PACKET_ID_NOT_FOUND,
    PAYLOAD_FORMAT_INVALID,
    PROTOCOL_ERROR,
    TOPIC_ALIAS_INVALID,
    TOPIC_FILTER_INVALID,
    Will5,
    ack5,
    connect5,
    decode_properties,
    paho5,
    parse_ack5,
    parse_connack5,
    parse_reason,
    publish5,
    raw5,
    round_trip5,
    sub_options,
    subscribe5,
)
from .rawmqtt import CONNACK, DISCONNECT, PUBACK, PUBCOMP, PUBREL, SUBACK, encode_length


@dataclass(frozen=True)
class Bad:
    data: bytes
    reason: int | frozenset[int]  # the reason code, or the codes the spec leaves open
    mosquitto: int | None = None  # what Mosquitto 2.0.11 sends instead, where it differs


def codes(reason: int | frozenset[int], mosquitto: int | None) -> frozenset[int]:
    allowed = reason if isinstance(reason, frozenset) else frozenset({reason})
    return allowed | {mosquitto} if ON_MOSQUITTO and mosquitto is not None else allowed


MOSQUITTO_JUST_CLOSES = "2.0.11 closes the connection without a DISCONNECT"

AFTER_CONNECT = {
    "duplicate-payload-format-indicator": pytest.param(
        Bad(
            publish5("v5/x", b"", props=[("payload_format_indicator", 1)] * 2),
            PROTOCOL_ERROR,
        ),
        marks=skip_on_mosquitto(MOSQUITTO_JUST_CLOSES),
    ),
    "duplicate-subscription-identifier": pytest.param(
        Bad(
            subscribe5(1, [("v5/x", 1)], props=[("subscription_identifier", 1)] * 2),
            PROTOCOL_ERROR,
        ),
        marks=skip_on_mosquitto(MOSQUITTO_JUST_CLOSES),
    ),
    # "wrong type": an identifier not valid for the packet type (2.2.2.2: malformed)
    "session-expiry-in-publish": Bad(
        publish5("v5/x", b"", props={"session_expiry_interval": 5}), MALFORMED_PACKET
    ),
    "property-length-past-the-end": Bad(publish5("v5/x", b"", props=b"\x02\x00"), MALFORMED_PACKET),
    "unknown-property-id": Bad(publish5("v5/x", b"", props=b"\x7f\x00"), MALFORMED_PACKET),
    "topic-alias-0": Bad(
        publish5("v5/x", b"", props={"topic_alias": 0}),
        frozenset({TOPIC_ALIAS_INVALID, PROTOCOL_ERROR}),
        mosquitto=MALFORMED_PACKET,
    ),
    "topic-alias-over-maximum": Bad(
        publish5("v5/x", b"", props={"topic_alias": 0xFFFF}), TOPIC_ALIAS_INVALID
    ),
    "topic-alias-never-set": Bad(publish5("", b"", props={"topic_alias": 1}), PROTOCOL_ERROR),
    "empty-topic-without-alias": Bad(publish5("", b"x"), PROTOCOL_ERROR),
    "subscription-identifier-0": Bad(
        subscribe5(1, [("v5/x", 1)], props={"subscription_identifier": 0}),
        PROTOCOL_ERROR,
        mosquitto=MALFORMED_PACKET,
    ),
    "retain-handling-3": Bad(
        subscribe5(1, [("v5/x", 0x31)]), PROTOCOL_ERROR, mosquitto=MALFORMED_PACKET
    ),
    "subscription-identifier-in-client-publish": pytest.param(
        Bad(publish5("v5/x", b"", props={"subscription_identifier": 3}), PROTOCOL_ERROR),
        marks=skip_on_mosquitto("2.0.11 accepts it"),
    ),
}


@pytest.mark.mqtt5("bad-properties")
@pytest.mark.parametrize("bad", AFTER_CONNECT.values(), ids=AFTER_CONNECT.keys())
def test_bad_property_gets_disconnect_with_reason(
    broker: BrokerProcess, clients: Clients, bad: Bad
) -> None:
    bystander = paho5(clients, broker, "bystander")
    offender = raw5(clients, broker)
    assert offender.connect5("offender").reason == 0
    offender.send_until_closed(bad.data)
    assert offender.expect_disconnect().reason in codes(bad.reason, bad.mosquitto)
    round_trip5(bystander)


def connect_with_raw_properties(props: bytes) -> bytes:
    header = b"\x00\x04MQTT\x05\x02\x00\x3c" + encode_length(len(props)) + props
    body = header + b"\x00\x08offender"
    return bytes([0x10]) + encode_length(len(body)) + body


AT_CONNECT = {
    "duplicate-session-expiry": Bad(
        connect5("offender", props=[("session_expiry_interval", 1)] * 2), PROTOCOL_ERROR
    ),
    "receive-maximum-0": Bad(connect5("offender", props={"receive_maximum": 0}), PROTOCOL_ERROR),
    "maximum-packet-size-0": Bad(
        connect5("offender", props={"maximum_packet_size": 0}), PROTOCOL_ERROR
    ),
    "request-response-information-2": Bad(
        connect5("offender", props={"request_response_information": 2}), PROTOCOL_ERROR
    ),
    "unknown-property-id": Bad(connect_with_raw_properties(b"\x7f\x00"), MALFORMED_PACKET),
    "topic-alias-in-connect": Bad(connect5("offender", props={"topic_alias": 1}), MALFORMED_PACKET),
    "duplicate-will-delay": Bad(
        connect5("offender", will=Will5("w", b"x", props=[("will_delay_interval", 1)] * 2)),
        PROTOCOL_ERROR,
    ),
}


@pytest.mark.mqtt5("bad-properties")
@skip_on_mosquitto("2.0.11 closes the connection without a CONNACK")
@pytest.mark.parametrize("bad", AT_CONNECT.values(), ids=AT_CONNECT.keys())
def test_bad_connect_property_gets_connack_with_reason(
    broker: BrokerProcess, clients: Clients, bad: Bad
) -> None:
    bystander = paho5(clients, broker, "bystander")
    offender = raw5(clients, broker)
    offender.send_until_closed(bad.data)
    seen = offender.wait_closed()
    assert [p.type for p in seen] == [CONNACK], seen
    assert parse_connack5(seen[0]).reason in codes(bad.reason, bad.mosquitto)
    round_trip5(bystander)


# -- reason codes in ordinary acknowledgements -------------------------------------------


@pytest.mark.mqtt5("reason-codes")
def test_puback_reason_codes(broker: BrokerProcess, clients: Clients) -> None:
    client = raw5(clients, broker)
    assert client.connect5("acks").reason == 0
    client.send(publish5("v5/nobody", b"x", qos=1, packet_id=1))
    assert parse_ack5(client.expect(PUBACK)).reason == NO_MATCHING_SUBSCRIBERS
    client.send(publish5("private/x", b"x", qos=1, packet_id=2))  # the ACL denies anonymous
    assert parse_ack5(client.expect(PUBACK)).reason == NOT_AUTHORIZED
    assert client.subscribe5([("v5/somebody", sub_options(1))], packet_id=3) == [1]
    client.send(publish5("v5/somebody", b"x", qos=1, packet_id=4))
    got = client.get()
    client.send(ack5(PUBACK, got.packet_id))
    assert parse_ack5(client.expect(PUBACK)).reason == 0


@pytest.mark.mqtt5("reason-codes")
def test_suback_and_unsuback_reason_codes(broker: BrokerProcess, clients: Clients) -> None:
    client = raw5(clients, broker)
    assert client.connect5("subacks").reason == 0
    granted = client.subscribe5(
        [("v5/q0", sub_options(0)), ("v5/q1", sub_options(1)), ("v5/q2", sub_options(2))]
    )
    assert granted == [0, 1, 2]
    assert client.unsubscribe5(["v5/q1", "v5/never"], packet_id=2) == [0, NO_SUBSCRIPTION_EXISTED]


@pytest.mark.mqtt5("reason-codes")
@skip_on_mosquitto("2.0.11 grants it and filters at delivery; an invalid filter is malformed")
def test_suback_refusals(broker: BrokerProcess, clients: Clients) -> None:
    client = raw5(clients, broker)
    assert client.connect5("refused").reason == 0
    client.send(subscribe5(1, [("private/x", 1), ("v5/ok", 1), ("v5/#/bad", 1)]))
    body = client.expect(SUBACK).body
    _props, pos = decode_properties(body, 2)
    assert list(body[pos:]) == [NOT_AUTHORIZED, 1, TOPIC_FILTER_INVALID]


@pytest.mark.mqtt5("reason-codes")
@skip_on_mosquitto("2.0.11 answers PUBCOMP 0 for an unknown packet id")
def test_pubrel_for_unknown_packet_id(broker: BrokerProcess, clients: Clients) -> None:
    client = raw5(clients, broker)
    assert client.connect5("pubrel").reason == 0
    client.send(ack5(PUBREL, 999))
    reply = parse_ack5(client.expect(PUBCOMP))
    assert (reply.packet_id, reply.reason) == (999, PACKET_ID_NOT_FOUND)


@pytest.mark.mqtt5("reason-codes")
@skip_on_mosquitto("2.0.11 does not validate UTF-8 payloads")
def test_payload_format_invalid(broker: BrokerProcess, clients: Clients) -> None:
    bystander = paho5(clients, broker, "bystander")
    client = raw5(clients, broker)
    assert client.connect5("not-utf8").reason == 0
    client.send(
        publish5("v5/x", b"\xff\xfe", qos=1, packet_id=1, props={"payload_format_indicator": 1})
    )
    reply = client.recv()
    if reply.type == PUBACK:  # the spec allows either answer
        assert parse_ack5(reply).reason == PAYLOAD_FORMAT_INVALID
    else:
        assert reply.type == DISCONNECT, reply
        assert parse_reason(reply).reason == PAYLOAD_FORMAT_INVALID
    round_trip5(bystander)
