"""The trio adapter of the HTTP listener: h11 parses requests (keep-alive, limits on the
header block and body), the ``HttpApp`` answers them, and an upgrade to WebSocket on a
path with an endpoint is accepted through wsproto (a subprotocol the endpoint speaks is
required; permessage-deflate when the client offers it) and handed to that endpoint.
"""

from __future__ import annotations

import contextlib
import inspect
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
from broker.http.app import MAX_BODY_SIZE, HttpApp, Request, Response, WebSocketEndpoint
from broker.http.websocket import WebSocket, WebSocketClosed
from broker.log import event

log = logging.getLogger("broker.http")

RECEIVE_SIZE = 1 << 16
#: Bytes a request's line and headers may take (beyond: 431).
MAX_HEADER_SIZE = 16 * 1024
#: Seconds a client may take to send a whole request, or idle between requests.
REQUEST_TIMEOUT = 30.0
#: Seconds a client whose request was refused before its body may go on sending that body
#: (read and dropped) before the connection closes: closing on unread bytes would reset
#: the connection, and the refusal with it, at a client that reads only after sending.
DRAIN_TIMEOUT = 5.0

RawHeaders = list[tuple[bytes, bytes]]


class HttpListener:
    """What every connection of one HTTP listener shares."""

    def __init__(self, app: HttpApp, max_message_size: int) -> None:
        self.app = app
        self.max_message_size = max_message_size


class _Refused(Exception):
    """The request cannot be served: answer ``response`` (by default ``status`` with
    ``text``) and close."""

    def __init__(self, status: int, text: str, response: Response | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.response = response or Response.text(text + "\n", status)


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
                with trio.move_on_after(REQUEST_TIMEOUT) as deadline:
                    received = await _read_request(
                        conn, stream, peer, peer_loopback, listener.app, deadline
                    )
            except _Refused as refused:
                event(log, logging.INFO, "http bad request", peer=peer, error=refused.text)
                await _send(conn, stream, refused.response)
                if conn.their_state is h11.SEND_BODY:
                    await _drain(stream)
                return
            if received is None:
                return
            request, raw_headers = received
            endpoint = listener.app.websockets.get(request.path)
            if endpoint is not None and _asks_for_websocket(request):
                trailing = conn.trailing_data[0]
                await _upgrade(listener, stream, request, raw_headers, endpoint, trailing)
                return
            response = await _answer(listener.app, request)
            if request.method == "HEAD":
                response = _without_body(response)
            await _send(conn, stream, response)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()


async def _answer(app: HttpApp, request: Request) -> Response:
    """The app's response; a handler that fails unexpectedly gives 500 (and one log line
    with the traceback), and the connection carries on."""
    try:
        response = app.handle(request)
        if inspect.isawaitable(response):
            response = await response
    except Exception:
        log.exception(
            "http handler failed", extra={"fields": {"path": request.path, "peer": request.peer}}
        )
        return Response.text("internal server error\n", 500)
    return response


async def _read_request(
    conn: h11.Connection,
    stream: trio.abc.Stream,
    peer: str,
    peer_loopback: bool,
    app: HttpApp,
    deadline: trio.CancelScope,
) -> tuple[Request, RawHeaders] | None:
    """The next whole request, or None when the client closed the connection.  The route
    may refuse it on its head alone (``HttpApp.precheck``); a body over its route's limit
    is refused as soon as its Content-Length or its bytes say so, so no more than the
    limit is ever held.  A route that allows more than the default limit (file uploads)
    may take longer: each part of its body moves the ``deadline``."""
    head = await _next_event(conn, stream)
    if not isinstance(head, h11.Request):
        return None
    if sum(len(name) + len(value) + 4 for name, value in head.headers) > MAX_HEADER_SIZE:
        raise _Refused(431, "request header fields too large")  # h11 checks only partial ones
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
        body=b"",
        peer=peer,
        peer_loopback=peer_loopback,
    )
    refusal = app.precheck(request)
    if refusal is not None:
        refusal = _without_body(refusal) if request.method == "HEAD" else refusal
        raise _Refused(refusal.status, refusal.body.decode(errors="replace").strip(), refusal)
    max_body = app.max_body(request.path)
    declared = next((v for n, v in head.headers if n == b"content-length"), b"0")
    if int(declared) > max_body:  # h11 has checked it is a number
        raise _Refused(413, "request body too large")
    if conn.they_are_waiting_for_100_continue:
        await stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
    body = bytearray()
    while True:
        part = await _next_event(conn, stream)
        if isinstance(part, h11.Data):
            body += part.data
            if len(body) > max_body:
                raise _Refused(413, "request body too large")
            if max_body > MAX_BODY_SIZE:
                deadline.deadline = trio.current_time() + REQUEST_TIMEOUT
        elif isinstance(part, h11.EndOfMessage) or part is h11.PAUSED:
            break
        else:
            return None
    request.body = bytes(body)
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
    headers = [("content-type", response.content_type), *response.headers]
    if not any(name == "content-length" for name, _ in response.headers):  # HEAD sets its own
        headers.insert(1, ("content-length", str(len(response.body))))
    data = conn.send(h11.Response(status_code=response.status, headers=headers))
    data += conn.send(h11.Data(data=response.body)) if response.body else b""
    data += conn.send(h11.EndOfMessage())
    await stream.send_all(data)


def _without_body(response: Response) -> Response:
    """The answer to a HEAD: a GET's headers, its length included, and no body."""
    if not response.body:
        return response
    length = ("content-length", str(len(response.body)))
    return Response(response.status, b"", response.content_type, [*response.headers, length])


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


async def _drain(stream: trio.abc.Stream) -> None:
    """Say we are done (half-close, where the stream can) and drop what the client still
    sends, until it closes or ``DRAIN_TIMEOUT`` passes."""
    with trio.move_on_after(DRAIN_TIMEOUT), contextlib.suppress(trio.BrokenResourceError):
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()
        while await stream.receive_some(RECEIVE_SIZE):
            pass


def _nothing() -> None:
    pass
