"""The HTTP listener: health endpoints, keep-alive, bad requests, MQTT over WebSocket."""

from __future__ import annotations

import http.client
import socket

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .brokers import BrokerFactory, BrokerProcess
from .clients import Clients, PahoClient

TIMEOUT = 10.0


def http_get(broker: BrokerProcess, path: str) -> tuple[int, bytes]:
    assert broker.http_port, "no http listener"
    conn = http.client.HTTPConnection(broker.host, broker.http_port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_health_and_readiness(broker: BrokerProcess) -> None:
    assert http_get(broker, "/healthz") == (200, b"ok\n")
    assert http_get(broker, "/readyz") == (200, b"ready\n")
    assert http_get(broker, "/nothing-here")[0] == 404


def test_keep_alive_serves_several_requests_on_one_connection(broker: BrokerProcess) -> None:
    assert broker.http_port
    conn = http.client.HTTPConnection(broker.host, broker.http_port, timeout=TIMEOUT)
    try:
        for _ in range(3):
            conn.request("GET", "/healthz")
            assert conn.getresponse().read() == b"ok\n"
    finally:
        conn.close()


def raw_exchange(broker: BrokerProcess, data: bytes) -> bytes:
    assert broker.http_port
    with socket.create_connection((broker.host, broker.http_port), TIMEOUT) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_malformed_request_gets_400_and_the_connection_closes(broker: BrokerProcess) -> None:
    reply = raw_exchange(broker, b"GARBAGE\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ")


def test_oversized_headers_get_431(broker: BrokerProcess) -> None:
    huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n"
    assert raw_exchange(broker, huge).startswith(b"HTTP/1.1 431 ")


def test_paho_over_websocket(broker: BrokerProcess, clients: Clients) -> None:
    assert broker.http_port
    subscriber = clients.paho(broker)
    assert subscriber.subscribe(("ws/t", 1)) == [1]
    over_ws = PahoClient(broker.host, broker.http_port, transport="websockets")
    try:
        assert over_ws.connect().reason == 0
        assert over_ws.subscribe(("tcp/t", 1)) == [1]
        over_ws.publish("ws/t", b"from a browser", qos=1)
        message = subscriber.get()
        assert (message.topic, message.payload) == ("ws/t", b"from a browser")
        subscriber.publish("tcp/t", b"to a browser", qos=1)
        assert over_ws.get().payload == b"to a browser"
    finally:
        over_ws.close()


def test_an_oversized_mqtt_frame_closes_only_that_websocket_with_1009(
    broker_factory: BrokerFactory, clients: Clients
) -> None:
    broker = broker_factory({"limits": {"ws_max_message_size": 1024}})
    assert broker.http_port
    bystander = PahoClient(broker.host, broker.http_port, transport="websockets")
    url = f"ws://{broker.host}:{broker.http_port}/mqtt"
    try:
        assert bystander.connect().reason == 0
        # no compression offered: the frame takes the hand-written path of broker/http/frames
        with connect(url, subprotocols=["mqtt"], compression=None, open_timeout=TIMEOUT) as ws:
            ws.send(b"\x30" + b"\x00" * 2000)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        broker.wait_logged("websocket bad input", 1)
        assert broker.log_text().count("websocket bad input") == 1
        assert bystander.subscribe(("still/here", 1)) == [1]
    finally:
        bystander.close()
