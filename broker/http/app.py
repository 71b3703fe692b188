"""What the HTTP listener serves, sans-I/O: plain request handlers by path, and WebSocket
endpoints by path with the subprotocols each accepts.

The runtime fills an ``HttpApp`` (the broker's own services and the protocol front ends'
WebSocket endpoints), so this package never imports a protocol.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from broker.http.websocket import WebSocket


@dataclass
class Request:
    method: str
    path: str
    query: str
    #: header names lowercased; a repeated header's values joined with ", "
    headers: dict[str, str]
    body: bytes
    peer: str
    peer_loopback: bool


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(value).encode(), "application/json")

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode())


#: a plain request's handler: the whole request in, the whole response out
Handler = Callable[[Request], Response]
#: a WebSocket endpoint's handler: runs the accepted connection until it ends
WebSocketHandler = Callable[["WebSocket", Request], Awaitable[None]]


@dataclass(frozen=True)
class WebSocketEndpoint:
    subprotocols: tuple[str, ...]
    handler: WebSocketHandler


class HttpApp:
    def __init__(self) -> None:
        self._exact: dict[str, Handler] = {}
        self._prefixes: list[tuple[str, Handler]] = []
        self.websockets: dict[str, WebSocketEndpoint] = {}

    def route(self, path: str, handler: Handler) -> None:
        """Serve ``path``; a path ending in ``/`` serves everything under it."""
        if path.endswith("/") and path != "/":
            self._prefixes.append((path, handler))
            self._prefixes.sort(key=lambda item: -len(item[0]))
        else:
            self._exact[path] = handler

    def websocket(
        self, path: str, subprotocols: tuple[str, ...], handler: WebSocketHandler
    ) -> None:
        self.websockets[path] = WebSocketEndpoint(subprotocols, handler)

    def handle(self, request: Request) -> Response:
        handler = self._exact.get(request.path)
        if handler is None:
            handler = next((h for p, h in self._prefixes if request.path.startswith(p)), None)
        if handler is None:
            return Response.text("not found\n", 404)
        return handler(request)
