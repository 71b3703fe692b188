"""MQTT 5 connection: CONNACK capabilities, assigned client id, server keep alive,
response information, enhanced authentication and server-initiated DISCONNECT."""

from __future__ import annotations

import uuid

import pytest
import scramp

from .brokers import ALICE, ON_MOSQUITTO, BrokerFactory, BrokerProcess, skip_on_mosquitto
from .clients import Clients
from .mqtt5 import (
    AUTH,
    BAD_AUTHENTICATION_METHOD,
    CONTINUE_AUTHENTICATION,
    KEEP_ALIVE_TIMEOUT,
    PACKET_TOO_LARGE,
    SERVER_SHUTTING_DOWN,
    SESSION_TAKEN_OVER,
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
    TOPIC_ALIAS_INVALID,
    RawClient5,
    auth5,
    connect5,
    disconnect5,
    paho5,
    parse_connack5,
    parse_reason,
    publish5,
    raw5,
    round_trip5,
    start_broker,
    sub_options,
)
from .rawmqtt import CONNACK

DEFAULT_MAX_PACKET = 65536  # DEFAULT_CONFIG's mqtt.max_packet_size
DEFAULT_INFLIGHT = 20  # DEFAULT_CONFIG's mqtt.max_inflight


@pytest.mark.mqtt5("connect")
def test_level_5_accepted_with_configured_limits(broker: BrokerProcess, clients: Clients) -> None:
    connack = raw5(clients, broker).connect5("v5-client")
    assert (connack.session_present, connack.reason) == (False, 0)
    props = connack.props
    assert props.get("maximum_packet_size") == DEFAULT_MAX_PACKET
    assert props.get("receive_maximum") == DEFAULT_INFLIGHT
    assert "assigned_client_identifier" not in props
    # MQTT 3.1.1 still works on the same listener
    assert clients.raw(broker).connect("v311-client") == (False, 0)


@pytest.mark.mqtt5("connect")
def test_connack_capabilities_tell_the_truth(broker: BrokerProcess, clients: Clients) -> None:
    """Every capability CONNACK advertises (absent means the spec's default: available)
    holds, and every one it denies is refused with the right reason code."""
    client = raw5(clients, broker)
    props = client.connect5("truthful").props
    maximum_qos = props.get("maximum_qos", 2)
    assert maximum_qos in (0, 1, 2)
    pub = paho5(clients, broker, "truth-pub")

    # maximum QoS: a subscription at QoS 2 is granted at most that
    assert client.subscribe5([("truth/qos", sub_options(2))], packet_id=1) == [maximum_qos]

    # retain available: a retained message reaches a later subscriber
    if props.get("retain_available", 1):
        pub.publish("truth/retained", b"kept", qos=min(1, maximum_qos), retain=True)
        assert client.subscribe5([("truth/retained", sub_options(1))], packet_id=2)[0] < 0x80
        got = client.get()
        assert (got.payload, got.retain) == (b"kept", True)

    # wildcard subscriptions
    wildcard_ok = client.subscribe5([("truth/+/w", sub_options(0))], packet_id=3)[0] < 0x80
    assert wildcard_ok == bool(props.get("wildcard_subscription_available", 1))

    # subscription identifiers
    codes = client.subscribe5(
        [("truth/id", sub_options(0))], packet_id=4, props={"subscription_identifier": 7}
    )
    if props.get("subscription_identifier_available", 1):
        assert codes == [0]
        pub.publish("truth/id", b"with id")
        assert client.get().props.get("subscription_identifier") == [7]
    else:
        assert codes == [SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED]

    # shared subscriptions
    codes = client.subscribe5([("$share/g/truth/shared", sub_options(0))], packet_id=5)
    if props.get("shared_subscription_available", 1):
        assert codes == [0]
        pub.publish("truth/shared", b"shared")
        assert client.get().payload == b"shared"
    else:
        assert codes == [SHARED_SUBSCRIPTIONS_NOT_SUPPORTED]

    # topic alias maximum: the highest alias is accepted, one more is refused
    alias_max = props.get("topic_alias_maximum", 0)
    assert client.subscribe5([("truth/alias", sub_options(0))], packet_id=6) == [0]
    if alias_max:
        client.send(publish5("truth/alias", b"a1", props={"topic_alias": alias_max}))
        client.send(publish5("", b"a2", props={"topic_alias": alias_max}))
        assert [client.get().payload, client.get().payload] == [b"a1", b"a2"]
    if alias_max < 0xFFFF:
        client.send(publish5("truth/alias", b"a3", props={"topic_alias": alias_max + 1}))
        assert client.expect_disconnect().reason == TOPIC_ALIAS_INVALID


@pytest.mark.mqtt5("connect")
def test_assigned_client_identifier_for_an_empty_id(
    broker: BrokerProcess, clients: Clients
) -> None:
    first = raw5(clients, broker).connect5("")
    second = raw5(clients, broker).connect5("")
    assert first.reason == second.reason == 0
    ids = [c.props.get("assigned_client_identifier") for c in (first, second)]
    assert all(ids) and ids[0] != ids[1], ids
    # the assigned identifier is a real client id: reusing it takes that session over
    assert raw5(clients, broker).connect5(ids[0]).reason == 0


@pytest.mark.mqtt5("connect")
def test_paho_sees_assigned_client_identifier(broker: BrokerProcess, clients: Clients) -> None:
    client = paho5(clients, broker, "")
    round_trip5(client)


@pytest.mark.mqtt5("connect")
def test_server_keep_alive_from_configured_maximum(
    request: pytest.FixtureRequest, clients: Clients
) -> None:
    broker = start_broker(request, {"mqtt": {"max_keepalive": 30}})
    too_long = raw5(clients, broker).connect5("ka-long", keepalive=600)
    assert too_long.reason == 0 and too_long.props.get("server_keep_alive") == 30
    none = raw5(clients, broker).connect5("ka-none", keepalive=0)
    assert none.reason == 0 and none.props.get("server_keep_alive") == 30
    within = raw5(clients, broker).connect5("ka-within", keepalive=20)
    assert within.reason == 0 and within.props.get("server_keep_alive", 20) == 20


@pytest.mark.mqtt5("connect")
@skip_on_mosquitto("2.0.11 ignores Request Response Information (it never sends one)")
def test_response_information_when_requested(broker: BrokerProcess, clients: Clients) -> None:
    client = raw5(clients, broker)
    connack = client.connect5("asks", props={"request_response_information": 1})
    base = connack.props.get("response_information")
    assert base, connack.props
    # it is a topic prefix the client may use for its responses
    topic = f"{base.rstrip('/')}/reply"
    assert client.subscribe5([(topic, sub_options(1))]) == [1]
    paho5(clients, broker, "responder").publish(topic, b"answer", qos=1)
    assert client.get().payload == b"answer"
    unasked = raw5(clients, broker).connect5("does-not-ask")
    assert "response_information" not in unasked.props


def scram_exchange(client: RawClient5, username: str, password: str) -> int:
    """SCRAM-SHA-256 through CONNECT/AUTH/CONNACK; returns the CONNACK's reason code
    (0x8C at once if the server does not do SCRAM)."""
    scram = scramp.ScramClient(["SCRAM-SHA-256"], username, password)
    method = {"authentication_method": "SCRAM-SHA-256"}
    client.send(
        connect5(
            f"scram-{uuid.uuid4().hex[:8]}",
            props={**method, "authentication_data": scram.get_client_first().encode()},
        )
    )
    reply = client.recv()
    if reply.type == CONNACK:
        return parse_connack5(reply).reason
    assert reply.type == AUTH, reply
    challenge = parse_reason(reply)
    assert challenge.reason == CONTINUE_AUTHENTICATION
    assert challenge.props["authentication_method"] == "SCRAM-SHA-256"
    scram.set_server_first(challenge.props["authentication_data"].decode())
    final = scram.get_client_final().encode()
    client.send(auth5(CONTINUE_AUTHENTICATION, {**method, "authentication_data": final}))
    connack = parse_connack5(client.expect(CONNACK))
    if connack.reason == 0:
        scram.set_server_final(connack.props["authentication_data"].decode())
    return connack.reason


@pytest.mark.mqtt5("enhanced-auth")
def test_enhanced_auth_scram_or_a_correct_refusal(broker: BrokerProcess, clients: Clients) -> None:
    """SCRAM-SHA-256 with ours (a good password succeeds, a bad one fails with 0x86 or
    0x87); Mosquitto without an auth plugin refuses with 0x8C Bad authentication method."""
    reason = scram_exchange(raw5(clients, broker), *ALICE)
    if ON_MOSQUITTO:
        assert reason == BAD_AUTHENTICATION_METHOD
        return
    assert reason == 0
    assert scram_exchange(raw5(clients, broker), ALICE[0], "wrong") in (0x86, 0x87)


@pytest.mark.mqtt5("enhanced-auth")
def test_unknown_authentication_method_refused(broker: BrokerProcess, clients: Clients) -> None:
    client = raw5(clients, broker)
    client.send(connect5("weird-auth", props={"authentication_method": "X-UNKNOWN-METHOD"}))
    assert parse_connack5(client.expect(CONNACK)).reason == BAD_AUTHENTICATION_METHOD
    assert client.wait_closed() == []


@pytest.mark.mqtt5("server-disconnect")
@skip_on_mosquitto("2.0.11 closes the old connection without DISCONNECT 0x8E")
def test_session_taken_over_gets_disconnect_0x8e(broker: BrokerProcess, clients: Clients) -> None:
    first = raw5(clients, broker)
    assert first.connect5("same-id").reason == 0
    second = paho5(clients, broker, "same-id")
    assert first.expect_disconnect().reason == SESSION_TAKEN_OVER
    round_trip5(second)


@pytest.mark.mqtt5("server-disconnect")
@skip_on_mosquitto("2.0.11 does not close a silent keep alive 1 connection with DISCONNECT")
def test_keep_alive_timeout_gets_disconnect_0x8d(broker: BrokerProcess, clients: Clients) -> None:
    """Keep alive 1 s: the broker must close after 1.5 s of silence (the wait here is the
    behaviour under test, bounded by the read timeout)."""
    client = raw5(clients, broker)
    assert client.connect5("silent", keepalive=1).reason == 0
    assert client.expect_disconnect(timeout=5).reason == KEEP_ALIVE_TIMEOUT


@pytest.mark.mqtt5("server-disconnect")
def test_packet_too_large_gets_disconnect_0x95(broker: BrokerProcess, clients: Clients) -> None:
    bystander = paho5(clients, broker, "bystander")
    client = raw5(clients, broker)
    assert client.connect5("oversize").reason == 0
    client.send_until_closed(publish5("big", b"x" * (DEFAULT_MAX_PACKET + 100)))
    assert client.expect_disconnect().reason == PACKET_TOO_LARGE
    round_trip5(bystander)


@pytest.mark.mqtt5("server-disconnect")
@skip_on_mosquitto("2.0.11 closes connections at shutdown without DISCONNECT")
def test_server_shutting_down_gets_disconnect_0x8b(broker: BrokerProcess, clients: Clients) -> None:
    client = raw5(clients, broker)
    assert client.connect5("bystander").reason == 0
    assert broker.terminate() == 0
    assert client.expect_disconnect().reason == SERVER_SHUTTING_DOWN


@pytest.mark.mqtt5("server-disconnect")
@skip_on_mosquitto("2.0.11 has no per-user connection limit")
def test_connection_quota_exceeded_gets_connack_0x97(
    broker_factory: BrokerFactory, clients: Clients
) -> None:
    broker = broker_factory({"limits": {"max_connections_per_user": 1}})
    first = raw5(clients, broker)
    assert first.connect5("first", username=ALICE[0], password=ALICE[1]).reason == 0
    second = raw5(clients, broker)
    assert second.connect5("second", username=ALICE[0], password=ALICE[1]).reason == 0x97
    first.send(disconnect5(0))
    first.wait_closed()  # the broker closed it: its place is free
    third = raw5(clients, broker)
    assert third.connect5("first", username=ALICE[0], password=ALICE[1]).reason == 0
