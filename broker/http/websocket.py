"""An accepted WebSocket connection over a trio stream, with wsproto doing the framing.

``WebSocket`` gives whole messages (``receive``/``send``) to endpoints that speak in
messages (the native protocol, XMPP's RFC 7395 framing), and ``byte_stream()`` turns it into
a ``trio.abc.Stream`` of binary message data for endpoints that speak a byte stream (MQTT:
a packet may span frames, a frame may hold several packets).  Pings are answered here;
a message over ``max_message_size`` closes the connection with 1009, and wsproto closes
with 1002/1007 on bad frames or bad UTF-8.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque

import trio
from wsproto import Connection
from wsproto.connection import ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason

from broker.http.frames import (
    BadText,
    DataFrameReader,
    FrameTooBig,
    NotBinary,
    data_frame,
    data_frames,
)
from broker.log import event as log_event

log = logging.getLogger("broker.http")

RECEIVE_SIZE = 1 << 16
#: Seconds a peer has to answer our close frame before the TCP connection goes.
CLOSE_TIMEOUT = 3.0


class WebSocketClosed(Exception):
    """The WebSocket is closed; ``code`` says why (RFC 6455 7.4)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class WebSocket:
    def __init__(
        self,
        stream: trio.abc.Stream,
        connection: Connection,
        subprotocol: str | None,
        max_message_size: int,
        compressed: bool = False,
        peer: str = "",
    ) -> None:
        """``compressed``: permessage-deflate was negotiated, so wsproto does all the
        framing; otherwise data frames take the hand-written path of ``frames``."""
        self.stream = stream
        self.connection = connection
        self.subprotocol = subprotocol
        self.max_message_size = max_message_size
        self._sending = trio.Lock()
        self._parts: list[bytes | str] = []
        #: whole messages received and not taken yet
        self._pending: deque[bytes | str] = deque()
        self._size = 0
        self.close_code: int | None = None
        self._compressed = compressed
        self.peer = peer
        self._reader = None if compressed else DataFrameReader(max_message_size)

    # --- receiving ---------------------------------------------------------------------

    async def receive(self) -> bytes | str:
        """The next whole message; ``WebSocketClosed`` once the connection is closed."""
        while not self._pending:
            await self._fill()
        return self._pending.popleft()

    async def receive_many(self) -> list[bytes | str]:
        """Every whole message that has arrived, at least one: a reader handles what one
        read brought in one go."""
        while not self._pending:
            await self._fill()
        messages = list(self._pending)
        self._pending.clear()
        return messages

    async def receive_data(self) -> bytes:
        """The binary message data that has arrived, whatever the message boundaries: all
        of it that one read brought, so a byte-stream protocol handles it in one go."""
        while True:
            if self._pending:
                return await self._take_data()
            reader = self._reader
            if reader is None or self.close_code is not None:
                await self._fill()
                continue
            data = await self.stream.receive_some(RECEIVE_SIZE)
            if not data:
                self.connection.receive_data(None)
                await self._fill()
                continue
            try:
                payload = reader.feed_stream(data)
            except NotBinary:
                await self._refuse(CloseReason.UNSUPPORTED_DATA, "binary frames only")
            except FrameTooBig:
                await self._refuse(CloseReason.MESSAGE_TOO_BIG, "message too big")
            self._hand_over(reader)
            if payload:
                return payload

    async def _take_data(self) -> bytes:
        chunks: list[bytes] = []
        while self._pending and isinstance(self._pending[0], bytes):
            chunks.append(self._pending.popleft())  # type: ignore[arg-type]
        if not chunks:  # a text message
            await self._refuse(CloseReason.UNSUPPORTED_DATA, "binary frames only")
        return b"".join(chunks)

    async def _fill(self) -> None:
        """Queue the whole messages buffered in wsproto, answering pings on the way; read
        more when there are none.  ``WebSocketClosed`` once the close handshake began."""
        while True:
            for event in self.connection.events():
                if isinstance(event, Message):
                    await self._assemble(event)
                elif isinstance(event, Ping):
                    await self._send(self.connection.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self.close_code = event.code
                    if self.connection.state == ConnectionState.REMOTE_CLOSING:
                        await self._send(self.connection.send(event.response()))
                    elif self.connection.state == ConnectionState.OPEN:
                        # wsproto refused a frame (1002, or 1007 for bad UTF-8): we close
                        _log_bad_input(self.peer, event.code, event.reason)
                        await self._send(self.connection.send(event))
                    break
            if self._pending:
                return
            if self.close_code is not None:
                raise WebSocketClosed(self.close_code)
            data = await self.stream.receive_some(RECEIVE_SIZE)
            if data and self._reader is not None:
                await self._read_fast(data)
            else:
                self.connection.receive_data(data or None)

    async def _assemble(self, event: Message) -> None:
        """A message, or a fragment of one, from wsproto: whole messages are queued."""
        self._size += len(event.data)
        if self._size > self.max_message_size:
            await self._refuse(CloseReason.MESSAGE_TOO_BIG, "message too big")
        self._parts.append(event.data)
        if event.message_finished:
            parts, self._parts, self._size = self._parts, [], 0
            if isinstance(event, TextMessage):
                self._pending.append("".join(parts))  # type: ignore[arg-type]
            else:
                self._pending.append(b"".join(parts))  # type: ignore[arg-type]

    async def _read_fast(self, data: bytes) -> None:
        reader = self._reader
        assert reader is not None
        try:
            self._pending.extend(reader.feed(data))
        except FrameTooBig:
            await self._refuse(CloseReason.MESSAGE_TOO_BIG, "message too big")
        except BadText:
            await self._refuse(CloseReason.INVALID_FRAME_PAYLOAD_DATA, "text is not UTF-8")
        self._hand_over(reader)

    def _hand_over(self, reader: DataFrameReader) -> None:
        """After the reader met a frame it does not take, wsproto parses from there on."""
        if reader.handed_over is not None:
            self._reader = None
            self.connection.receive_data(reader.handed_over)

    # --- sending -----------------------------------------------------------------------

    async def send(self, message: bytes | bytearray | memoryview | str) -> None:
        if self.connection.state != ConnectionState.OPEN:
            raise WebSocketClosed(self.close_code or CloseReason.NORMAL_CLOSURE)
        await self._send(self._frame(message))

    async def send_many(self, messages: list[bytes | str]) -> None:
        """Several messages in one write."""
        if self.connection.state != ConnectionState.OPEN:
            raise WebSocketClosed(self.close_code or CloseReason.NORMAL_CLOSURE)
        if self._compressed:
            await self._send(b"".join([self._frame(m) for m in messages]))
        else:
            await self._send(data_frames(messages))

    def _frame(self, message: bytes | bytearray | memoryview | str) -> bytes:
        if self._compressed:
            return self.connection.send(_message_event(message))
        return data_frame(message)

    async def ping(self) -> None:
        """A ping frame, so an idle peer shows it is alive (and proxies keep the TCP
        connection)."""
        if self.connection.state == ConnectionState.OPEN:
            await self._send(self.connection.send(Ping()))

    async def _refuse(self, code: int, reason: str) -> None:
        """Bad input from the peer: one log line, then the close (``WebSocketClosed``)."""
        _log_bad_input(self.peer, code, reason)
        await self.close(code, reason)

    async def close(self, code: int = CloseReason.NORMAL_CLOSURE, reason: str = "") -> None:
        """Send a close frame (once) and end receiving with ``WebSocketClosed``."""
        if self.connection.state == ConnectionState.OPEN:
            self.close_code = code
            data = self.connection.send(CloseConnection(code=code, reason=reason))
            with trio.move_on_after(CLOSE_TIMEOUT):
                await self._send(data)
        raise WebSocketClosed(code)

    async def _send(self, data: bytes) -> None:
        if data:
            async with self._sending:
                await self.stream.send_all(data)

    def byte_stream(self) -> WebSocketByteStream:
        return WebSocketByteStream(self)


def _log_bad_input(peer: str, code: int, reason: str) -> None:
    log_event(log, logging.INFO, "websocket bad input", peer=peer, code=int(code), reason=reason)


def _message_event(message: bytes | bytearray | memoryview | str) -> BytesMessage | TextMessage:
    if isinstance(message, str):
        return TextMessage(data=message)
    return BytesMessage(data=bytes(message))


class WebSocketByteStream(trio.abc.Stream):
    """Binary WebSocket messages as a byte stream: each ``send_all`` is one message."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            return await self.websocket.receive_data()
        except WebSocketClosed:
            return b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.websocket.send(data)
        except WebSocketClosed:
            raise trio.ClosedResourceError("the WebSocket is closed") from None

    async def wait_send_all_might_not_block(self) -> None:
        await self.websocket.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        with contextlib.suppress(WebSocketClosed):
            await self.websocket.close()
        await self.websocket.stream.aclose()
