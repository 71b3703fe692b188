"""A client of the native WebSocket protocol (/ws) for the e2e tests, on the `websockets`
library's synchronous client: requests with ids and their replies, server frames kept in
arrival order for the test to take."""

from __future__ import annotations

import base64
import itertools
import json
from collections import deque
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from websockets.sync.client import ClientConnection, connect

from .brokers import BrokerProcess

JSON = "broker.v1.json"
MSGPACK = "broker.v1.msgpack"
TIMEOUT = 5.0


def basic(user: tuple[str, str]) -> dict[str, str]:
    token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def url(broker: BrokerProcess, path: str = "/ws") -> str:
    assert broker.http_port, "no http listener"
    return f"ws://{broker.host}:{broker.http_port}{path}"


class NativeClient:
    def __init__(
        self,
        broker: BrokerProcess,
        subprotocol: str = JSON,
        *,
        basic_auth: tuple[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.subprotocol = subprotocol
        headers = basic(basic_auth) if basic_auth is not None else None
        self.ws: ClientConnection = connect(
            url(broker),
            subprotocols=[subprotocol],  # type: ignore[list-item]
            additional_headers=headers,
            open_timeout=TIMEOUT,
            legacy=True,  # no context manager: a test closes it at teardown
            **kwargs,
        )
        self.pending: deque[dict[str, Any]] = deque()
        self._ids = itertools.count(1)

    def send(self, frame: dict[str, Any]) -> None:
        if self.subprotocol == MSGPACK:
            self.ws.send(msgpack.packb(frame, use_bin_type=True))
        else:
            self.ws.send(json.dumps(frame))

    def _receive(self, timeout: float) -> dict[str, Any]:
        data = self.ws.recv(timeout=timeout)
        if self.subprotocol == MSGPACK:
            assert isinstance(data, bytes), "msgpack frames are binary"
            return msgpack.unpackb(data, raw=False)
        assert isinstance(data, str), "JSON frames are text"
        return json.loads(data)

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send a request with a fresh id; its reply (``ok`` or ``error``)."""
        request_id = next(self._ids)
        self.send({"op": op, "id": request_id, **fields})
        while True:
            frame = self._receive(TIMEOUT)
            if frame.get("id") == request_id and frame["op"] in ("ok", "error"):
                return frame
            self.pending.append(frame)

    def ok(self, op: str, **fields: Any) -> dict[str, Any]:
        reply = self.request(op, **fields)
        assert reply["op"] == "ok", reply
        return reply

    def error(self, op: str, **fields: Any) -> str:
        """The error code the broker answers the request with."""
        reply = self.request(op, **fields)
        assert reply["op"] == "error", reply
        return reply["code"]

    def next(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next server frame not yet taken."""
        return self.pending.popleft() if self.pending else self._receive(timeout)

    def message(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        frame = self.next(timeout)
        assert frame["op"] == "message", frame
        return frame

    def close(self) -> None:
        self.ws.close()


class NativeClients:
    """Native clients of a test, closed at teardown."""

    def __init__(self) -> None:
        self._open: list[NativeClient] = []

    def __call__(self, broker: BrokerProcess, *args: Any, **kwargs: Any) -> NativeClient:
        client = NativeClient(broker, *args, **kwargs)
        self._open.append(client)
        return client

    def close_all(self) -> None:
        for client in self._open:
            client.close()


@pytest.fixture
def native() -> Iterator[NativeClients]:
    """native(broker, subprotocol=JSON, basic_auth=None) opens a /ws client."""
    pool = NativeClients()
    yield pool
    pool.close_all()
