"""Bad input on /ws: oversized and non-UTF-8 frames close only the offending connection
with the WebSocket's own code; malformed or unknown requests get an error reply and the
connection carries on; an upgrade without a subprotocol of the endpoint is refused."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from .brokers import BrokerFactory, BrokerProcess
from .wsnative import MSGPACK, TIMEOUT, NativeClient, NativeClients, url


def closed_with(client: NativeClient) -> int:
    """The close code the broker ends the connection with."""
    with pytest.raises(ConnectionClosed) as closed:
        client.next()
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


def test_frame_over_the_size_limit_closes_with_1009(
    broker_factory: BrokerFactory, native: NativeClients
) -> None:
    broker = broker_factory({"limits": {"ws_max_message_size": 1024}})
    bystander = native(broker)
    bystander.ok("subscribe", topic="still/here")
    offender = native(broker)
    offender.send({"op": "publish", "topic": "big", "payload": "x" * 2000})
    assert closed_with(offender) == 1009
    bystander.ok("publish", topic="still/here", payload="fine")
    assert bystander.message()["payload"] == "fine"


def test_invalid_utf8_in_a_text_frame_closes_with_1007(
    broker: BrokerProcess, native: NativeClients
) -> None:
    offender = native(broker)
    offender.ws.send(b'{"op": "ping", "x": "\xff"}', text=True)
    assert closed_with(offender) == 1007
    broker.wait_logged("websocket bad input", 1)


def test_malformed_json_and_unknown_op_get_errors_and_the_connection_stays(
    broker: BrokerProcess, native: NativeClients
) -> None:
    client = native(broker)
    client.ws.send("{not json")
    reply = client.next()
    assert (reply["op"], reply["code"]) == ("error", "bad_request")
    client.ws.send(json.dumps([1, 2, 3]))
    assert client.next()["code"] == "bad_request"
    assert client.error("teleport") == "bad_request"
    assert client.error("publish", topic="a/+", payload="x") == "bad_request"
    assert client.error("publish", topic="a", payload="!!", encoding="base64") == "bad_request"
    assert client.error("publish", topic="a", payload="x", qos=2) == "bad_request"
    assert client.error("publish", topic="a", properties={"priority": "high"}) == "bad_request"
    assert client.error("subscribe", topic="a/#/b") == "bad_request"
    assert client.error("ack", delivery_tag="one") == "bad_request"
    client.ok("ping")


def test_malformed_msgpack_gets_an_error(broker: BrokerProcess, native: NativeClients) -> None:
    client = native(broker, MSGPACK)
    client.ws.send(b"\xc1 never valid msgpack")
    assert client.next()["code"] == "bad_request"
    client.ws.send('{"op": "ping"}')  # a text frame: this subprotocol speaks binary
    assert client.next()["code"] == "bad_request"
    client.ok("ping")


def test_upgrade_without_the_subprotocol_is_refused(broker: BrokerProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(url(broker), open_timeout=TIMEOUT).close()
    assert refused.value.response.status_code == 400
    with pytest.raises(InvalidStatus):
        connect(url(broker), subprotocols=["mqtt"], open_timeout=TIMEOUT).close()  # type: ignore[list-item]


def test_a_silent_connection_without_credentials_is_closed_after_the_auth_timeout(
    broker_factory: BrokerFactory, native: NativeClients
) -> None:
    broker = broker_factory({"limits": {"ws_auth_timeout": 1}})
    silent = native(broker)
    assert closed_with(silent) == 1008
    broker.wait_logged("websocket login timeout", 1)
