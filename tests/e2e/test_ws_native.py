"""The native WebSocket protocol on /ws (SPEC "Where protocols meet", item 3) with the
`websockets` client, in both subprotocols: auth, publish/subscribe, consume/ack/nack,
declare/bind, permission denials."""

from __future__ import annotations

import base64

import pytest
from websockets.exceptions import ConnectionClosed

from .brokers import ALICE, NOPERM, BrokerProcess
from .wsnative import JSON, MSGPACK, NativeClients

BOTH = pytest.mark.parametrize("subprotocol", [JSON, MSGPACK])


def payload(frame: dict, subprotocol: str) -> bytes:
    """A delivery's body, whichever way the subprotocol carries it."""
    if subprotocol == MSGPACK:
        return frame["payload"]
    if frame.get("encoding") == "base64":
        return base64.b64decode(frame["payload"])
    return frame["payload"].encode()


@BOTH
def test_publish_reaches_subscriber_with_properties(
    broker: BrokerProcess, native: NativeClients, subprotocol: str
) -> None:
    subscriber = native(broker, subprotocol)
    assert subscriber.ok("subscribe", topic="sensors/+/temp")["topic"] == "sensors/+/temp"
    publisher = native(broker, subprotocol, basic_auth=ALICE)
    properties = {"content_type": "text/plain", "headers": {"unit": "C"}, "message_id": "m1"}
    reply = publisher.ok(
        "publish", topic="sensors/kitchen/temp", payload="21.5", qos=1, properties=properties
    )
    assert reply["routed"] == 1
    message = subscriber.message()
    assert message["topic"] == "sensors/kitchen/temp"
    assert payload(message, subprotocol) == b"21.5"
    assert message["properties"]["content_type"] == "text/plain"
    assert message["properties"]["headers"] == {"unit": "C"}
    assert message["properties"]["message_id"] == "m1"
    assert message["properties"]["delivery_mode"] == 2


@BOTH
def test_binary_payloads_cross_intact(
    broker: BrokerProcess, native: NativeClients, subprotocol: str
) -> None:
    body = bytes(range(256))
    client = native(broker, subprotocol)
    client.ok("subscribe", topic="bin/#")
    if subprotocol == MSGPACK:
        client.ok("publish", topic="bin/x", payload=body)
    else:
        encoded = base64.b64encode(body).decode()
        client.ok("publish", topic="bin/x", payload=encoded, encoding="base64")
    message = client.message()
    assert payload(message, subprotocol) == body
    if subprotocol == JSON:
        assert message["encoding"] == "base64"


def test_unsubscribe_stops_deliveries(broker: BrokerProcess, native: NativeClients) -> None:
    client = native(broker)
    client.ok("subscribe", topic="a/b")
    client.ok("subscribe", topic="c/d")
    client.ok("unsubscribe", topic="a/b")
    client.ok("publish", topic="a/b", payload="gone")
    client.ok("publish", topic="c/d", payload="kept")
    assert client.message()["payload"] == "kept"


def test_retained_message_reaches_a_later_subscriber(
    broker: BrokerProcess, native: NativeClients
) -> None:
    client = native(broker)
    client.ok("publish", topic="status/door", payload="open", retain=True, qos=1)
    client.ok("subscribe", topic="status/#")
    message = client.message()
    assert (message["topic"], message["payload"], message["retain"]) == (
        "status/door",
        "open",
        True,
    )


@BOTH
def test_consume_ack_nack_cycle(
    broker: BrokerProcess, native: NativeClients, subprotocol: str
) -> None:
    client = native(broker, subprotocol, basic_auth=ALICE)
    client.ok("declare", queue="jobs", durable=True)
    client.ok("declare", exchange="work", type="direct")
    client.ok("bind", queue="jobs", source="work", routing_key="job")
    for body in ("one", "two"):
        client.ok("publish", exchange="work", routing_key="job", payload=body, qos=1)
    client.ok("consume", queue="jobs", prefetch=1)
    first = client.message()
    assert (payload(first, subprotocol), first["redelivered"]) == (b"one", False)
    assert (first["queue"], first["exchange"], first["routing_key"]) == ("jobs", "work", "job")
    client.ok("nack", delivery_tag=first["delivery_tag"], requeue=True)
    again = client.message()
    assert (payload(again, subprotocol), again["redelivered"]) == (b"one", True)
    client.ok("ack", delivery_tag=again["delivery_tag"])
    second = client.message()
    assert payload(second, subprotocol) == b"two"
    assert client.error("ack", delivery_tag=9999) == "precondition_failed"
    client.ok("nack", delivery_tag=second["delivery_tag"], requeue=False)
    assert client.ok("declare", queue="jobs", durable=True, passive=True)["messages"] == 0


def test_unacked_deliveries_return_to_the_queue_on_close(
    broker: BrokerProcess, native: NativeClients
) -> None:
    first = native(broker, basic_auth=ALICE)
    first.ok("declare", queue="returns")
    first.ok("publish", exchange="", routing_key="returns", payload="m")
    first.ok("consume", queue="returns")
    assert first.message()["redelivered"] is False
    first.close()
    second = native(broker, basic_auth=ALICE)
    second.ok("consume", queue="returns")
    message = second.message()
    assert (message["payload"], message["redelivered"]) == ("m", True)


def test_cancel_stops_a_consumer(broker: BrokerProcess, native: NativeClients) -> None:
    client = native(broker, basic_auth=ALICE)
    client.ok("declare", queue="cancelled")
    client.ok("consume", queue="cancelled")
    assert client.error("consume", queue="cancelled") == "precondition_failed"
    client.ok("cancel", queue="cancelled")
    assert client.error("cancel", queue="cancelled") == "not_found"
    client.ok("publish", exchange="", routing_key="cancelled", payload="waits")
    assert client.ok("declare", queue="cancelled", passive=True)["messages"] == 1


def test_declare_and_bind_errors(broker: BrokerProcess, native: NativeClients) -> None:
    client = native(broker, basic_auth=ALICE)
    assert client.error("consume", queue="no-such-queue") == "not_found"
    assert client.error("declare", queue="missing", passive=True) == "not_found"
    assert client.error("declare", exchange="x", type="nonsense") == "bad_request"
    assert client.error("declare", queue="amq.mine") == "access_refused"
    client.ok("declare", queue="shape", durable=True)
    assert client.error("declare", queue="shape", durable=False) == "precondition_failed"
    assert client.error("bind", queue="shape", source="no-such-exchange") == "not_found"
    assert client.error("publish", exchange="no-such-exchange", payload="x") == "not_found"


@BOTH
def test_auth_by_first_frame(
    broker: BrokerProcess, native: NativeClients, subprotocol: str
) -> None:
    client = native(broker, subprotocol)
    reply = client.ok("auth", username=ALICE[0], password=ALICE[1])
    assert reply["user"] == "alice"
    client.ok("subscribe", topic="private/alice")  # the ACL lets only alice in
    assert client.error("auth", username=ALICE[0], password=ALICE[1]) == "precondition_failed"


def test_auth_by_basic_header(broker: BrokerProcess, native: NativeClients) -> None:
    client = native(broker, basic_auth=ALICE)
    client.ok("subscribe", topic="private/alice")


def test_guest_rules_without_credentials(broker: BrokerProcess, native: NativeClients) -> None:
    client = native(broker)
    assert client.error("subscribe", topic="private/alice") == "access_refused"
    assert client.error("publish", topic="private/x", payload="no") == "access_refused"


def test_wrong_password_by_first_frame_closes(broker: BrokerProcess, native: NativeClients) -> None:
    client = native(broker)
    assert client.error("auth", username=ALICE[0], password="wrong") == "access_refused"
    with pytest.raises(ConnectionClosed) as closed:
        client.next()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    broker.wait_logged("websocket login refused", 1)


def test_wrong_password_by_basic_header_closes(
    broker: BrokerProcess, native: NativeClients
) -> None:
    client = native(broker, basic_auth=(ALICE[0], "wrong"))
    assert client.next()["code"] == "access_refused"
    with pytest.raises(ConnectionClosed) as closed:
        client.next()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_user_without_permissions_is_refused_everything(
    broker: BrokerProcess, native: NativeClients
) -> None:
    client = native(broker, basic_auth=NOPERM)
    assert client.error("publish", topic="a/b", payload="x") == "access_refused"
    assert client.error("subscribe", topic="a/b") == "access_refused"
    assert client.error("declare", queue="mine") == "access_refused"
    assert client.error("declare", exchange="mine", type="fanout") == "access_refused"
    admin = native(broker, basic_auth=ALICE)
    admin.ok("declare", queue="theirs")
    assert client.error("consume", queue="theirs") == "access_refused"
    assert client.error("bind", queue="theirs", source="amq.topic", routing_key="#") == (
        "access_refused"
    )
    client.ok("ping")  # the connection stays usable


def test_exclusive_queue_of_another_connection(
    broker: BrokerProcess, native: NativeClients
) -> None:
    owner = native(broker, basic_auth=ALICE)
    owner.ok("declare", queue="exclusive-q", exclusive=True)
    other = native(broker, basic_auth=ALICE)
    assert other.error("consume", queue="exclusive-q") == "access_refused"
