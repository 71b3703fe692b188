"""The trio adapter of the HTTP listener: h11 parses requests (keep-alive, limits on the
header block and body), the ``HttpApp`` answers them, and an upgrade to WebSocket on a
path with an endpoint is accepted through wsproto (a subprotocol the endpoint speaks is
required; permessage-deflate when the client offers it) and handed to that endpoint.
"""

from __future__ import annotations

import contextlib
import logging
from urllib.parse import urlsplit

import h11
import trio
from wsproto import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection
from wsproto.events import Request as UpgradeRequest
from wsproto.extensions import PerMessageDeflate
from wsproto.handshake import H11Handshake

from broker.guard import guarded_connection
from broker.http.app import HttpApp, Request, Response, WebSocketEndpoint
from broker.http.websocket import WebSocket, WebSocketClosed
from broker.log import event

log = logging.getLogger("broker.http")

RECEIVE_SIZE = 1 << 16
#: Bytes a request's line and headers may take (beyond: 431).
MAX_HEADER_SIZE = 16 * 1024
#: Bytes a request body may take (beyond: 413).
MAX_BODY_SIZE = 1024 * 1024
#: Seconds a client may take to send a whole request, or idle between requests.
REQUEST_TIMEOUT = 30.0

RawHeaders = list[tuple[bytes, bytes]]


class HttpListener:
    """What every connection of one HTTP listener shares."""

    def __init__(self, app: HttpApp, max_message_size: int) -> None:
        self.app = app
        self.max_message_size = max_message_size


class _Refused(Exception):
    """The request cannot be served: answer ``status`` and close."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


async def serve(
    listener: HttpListener, stream: trio.abc.Stream, *, peer: str, peer_loopback: bool
) -> None:
    """Serve one HTTP connection until it closes, or upgrades and its WebSocket ends."""
    guard = guarded_connection(log, "http", peer, stream, _nothing, _nothing)
    async with guard:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_SIZE)
        while True:
            received = None
            try:
                with trio.move_on_after(REQUEST_TIMEOUT):
                    received = await _read_request(conn, stream, peer, peer_loopback)
            except _Refused as refused:
                event(log, logging.INFO, "http bad request", peer=peer, error=refused.text)
                await _send(conn, stream, Response.text(refused.text + "\n", refused.status))
                return
            if received is None:
                return
            request, raw_headers = received
            endpoint = listener.app.websockets.get(request.path)
            if endpoint is not None and _asks_for_websocket(request):
                trailing = conn.trailing_data[0]
                await _upgrade(listener, stream, request, raw_headers, endpoint, trailing)
                return
            await _send(conn, stream, listener.app.handle(request))
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()


async def _read_request(
    conn: h11.Connection, stream: trio.abc.Stream, peer: str, peer_loopback: bool
) -> tuple[Request, RawHeaders] | None:
    """The next whole request, or None when the client closed the connection."""
    head = await _next_event(conn, stream)
    if not isinstance(head, h11.Request):
        return None
    if sum(len(name) + len(value) + 4 for name, value in head.headers) > MAX_HEADER_SIZE:
        raise _Refused(431, "request header fields too large")  # h11 checks only partial ones
    body = bytearray()
    while True:
        part = await _next_event(conn, stream)
        if isinstance(part, h11.Data):
            body += part.data
            if len(body) > MAX_BODY_SIZE:
                raise _Refused(413, "request body too large")
        elif isinstance(part, h11.EndOfMessage) or part is h11.PAUSED:
            break
        else:
            return None
    target = urlsplit(head.target.decode("ascii", "replace"))
    headers: dict[str, str] = {}
    for name, value in head.headers:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    request = Request(
        method=head.method.decode("ascii"),
        path=target.path or "/",
        query=target.query,
        headers=headers,
        body=bytes(body),
        peer=peer,
        peer_loopback=peer_loopback,
    )
    return request, list(head.headers)


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream) -> object:
    while True:
        try:
            got = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise _Refused(exc.error_status_hint, str(exc)) from None
        if got is not h11.NEED_DATA:
            return got
        data = await stream.receive_some(RECEIVE_SIZE)
        conn.receive_data(data)


async def _send(conn: h11.Connection, stream: trio.abc.Stream, response: Response) -> None:
    headers = [
        ("content-type", response.content_type),
        ("content-length", str(len(response.body))),
        *response.headers,
    ]
    data = conn.send(h11.Response(status_code=response.status, headers=headers))
    data += conn.send(h11.Data(data=response.body)) if response.body else b""
    data += conn.send(h11.EndOfMessage())
    await stream.send_all(data)


def _asks_for_websocket(request: Request) -> bool:
    return (
        request.method == "GET"
        and request.headers.get("upgrade", "").lower() == "websocket"
        and "upgrade" in request.headers.get("connection", "").lower()
    )


async def _upgrade(
    listener: HttpListener,
    stream: trio.abc.Stream,
    request: Request,
    raw_headers: RawHeaders,
    endpoint: WebSocketEndpoint,
    trailing: bytes,
) -> None:
    handshake = H11Handshake(ConnectionType.SERVER)
    handshake.initiate_upgrade_connection(raw_headers, request.path)
    asked = next((e for e in handshake.events() if isinstance(e, UpgradeRequest)), None)
    offered = asked.subprotocols if asked is not None else []
    chosen = next((p for p in offered if p in endpoint.subprotocols), None)
    if asked is None or chosen is None:
        event(log, logging.INFO, "http websocket refused", peer=request.peer, path=request.path)
        await stream.send_all(handshake.send(RejectConnection(status_code=400)))
        return
    deflate = PerMessageDeflate()
    await stream.send_all(
        handshake.send(AcceptConnection(subprotocol=chosen, extensions=[deflate]))
    )
    connection = handshake.connection
    assert connection is not None
    if trailing:
        connection.receive_data(trailing)
    websocket = WebSocket(
        stream, connection, chosen, listener.max_message_size, deflate.enabled(), request.peer
    )
    with contextlib.suppress(WebSocketClosed):
        await endpoint.handler(websocket, request)


def _nothing() -> None:
    pass
