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

#: Bytes a request body may take unless its route allows more (beyond: 413).
MAX_BODY_SIZE = 1024 * 1024

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


#: a plain request's handler: the whole request in, the whole response out (awaited when
#: the handler is a coroutine function, e.g. one that writes to disk in a worker thread)
Handler = Callable[[Request], Response | Awaitable[Response]]
#: a route's look at a request before its body is read (``body`` is still empty): a response
#: to answer at once instead (e.g. a PUT without the right credentials), or None to go on
Precheck = Callable[[Request], Response | None]
#: a WebSocket endpoint's handler: runs the accepted connection until it ends
WebSocketHandler = Callable[["WebSocket", Request], Awaitable[None]]


@dataclass(frozen=True)
class WebSocketEndpoint:
    subprotocols: tuple[str, ...]
    handler: WebSocketHandler


class HttpApp:
    def __init__(self) -> None:
        self._exact: dict[str, _Route] = {}
        self._prefixes: list[tuple[str, _Route]] = []
        self.websockets: dict[str, WebSocketEndpoint] = {}

    def route(
        self,
        path: str,
        handler: Handler,
        max_body: int = MAX_BODY_SIZE,
        precheck: Precheck | None = None,
    ) -> None:
        """Serve ``path``; a path ending in ``/`` serves everything under it.  Requests
        with a body over ``max_body`` bytes are refused (413) before reaching ``handler``,
        as are those ``precheck`` answers on their head alone."""
        route = _Route(handler, max_body, precheck)
        if path.endswith("/") and path != "/":
            self._prefixes.append((path, route))
            self._prefixes.sort(key=lambda item: -len(item[0]))
        else:
            self._exact[path] = route

    def websocket(
        self, path: str, subprotocols: tuple[str, ...], handler: WebSocketHandler
    ) -> None:
        self.websockets[path] = WebSocketEndpoint(subprotocols, handler)

    def max_body(self, path: str) -> int:
        """The most body bytes a request to ``path`` may carry."""
        route = self._find(path)
        return route.max_body if route is not None else MAX_BODY_SIZE

    def precheck(self, request: Request) -> Response | None:
        """The answer to a request on its head alone, if its route has one."""
        route = self._find(request.path)
        if route is None or route.precheck is None:
            return None
        return route.precheck(request)

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        route = self._find(request.path)
        if route is None:
            return Response.text("not found\n", 404)
        return route.handler(request)

    def _find(self, path: str) -> _Route | None:
        route = self._exact.get(path)
        if route is None:
            route = next((r for p, r in self._prefixes if path.startswith(p)), None)
        return route


@dataclass(frozen=True)
class _Route:
    handler: Handler
    max_body: int
    precheck: Precheck | None
