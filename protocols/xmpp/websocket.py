"""XMPP over WebSocket (RFC 7395), the endpoint the runtime serves on ``/xmpp``.

The WebSocket becomes a stream of whole messages: each read is one message, and what the
connection writes leaves as one text message per top-level element.  With the connection
in WebSocket framing (``framing.WEBSOCKET``), the TCP adapter (``server.serve``) runs it
unchanged: negotiation timeout, pings of quiet streams, stores synced before acks, and
stream management's hibernation all work as over TCP.
"""

from __future__ import annotations

import trio

from broker.http.websocket import WebSocket, WebSocketByteStream, WebSocketClosed
from protocols.xmpp.framing import WEBSOCKET, split_elements
from protocols.xmpp.frontend import XMPPFrontEnd
from protocols.xmpp.server import serve

SUBPROTOCOL = "xmpp"


async def serve_websocket(
    front: XMPPFrontEnd, websocket: WebSocket, *, peer: str, peer_loopback: bool, secure: bool
) -> None:
    """Run one accepted WebSocket as an XMPP client stream until it ends.  ``secure``
    says the WebSocket runs over TLS (wss), which SASL PLAIN needs off loopback."""
    await serve(
        front,
        MessageStream(websocket),
        peer=peer,
        peer_loopback=peer_loopback,
        tls=None,
        secure=secure,
        framing=WEBSOCKET,
    )


class MessageStream(WebSocketByteStream):
    """A WebSocket as a ``trio.abc.Stream`` of whole messages (text or binary, as UTF-8
    bytes).  ``send_all`` takes complete top-level elements and sends each as one text
    message, all in one write."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The next message; b"" once the WebSocket is closed.  An empty message comes
        as a blank, which the parser refuses as it does any message that is not one
        element."""
        try:
            message = await self.websocket.receive()
        except WebSocketClosed:
            return b""
        data = message.encode() if isinstance(message, str) else message
        return data or b" "

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        elements = [element.decode() for element in split_elements(bytes(data))]
        try:
            await self.websocket.send_many(elements)
        except WebSocketClosed:
            raise trio.ClosedResourceError("the WebSocket is closed") from None
