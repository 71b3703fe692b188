"""How a client stream's XML is framed on the wire, sans-I/O.

Over TCP (RFC 6120) each direction is one XML document: a ``<stream:stream>`` header opens
it and ``</stream:stream>`` ends it.  Over a WebSocket (RFC 7395) there is no enclosing
document: every message is one complete element that declares its own namespaces, the
client opens with ``<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to=… version='1.0'/>``
(again after SASL, where TCP restarts the stream) and closes with ``<close/>``, and stream
features and errors carry their ``xmlns:stream``.  ``XMPPConnection`` speaks through one
of the two framings below; everything between the open and the close is the same.
"""

from __future__ import annotations

import re

from protocols.xmpp.stanza import stream_error
from protocols.xmpp.stream import (
    NS_STREAM,
    XML_LANG,
    Event,
    StreamClosed,
    StreamError,
    StreamOpened,
    StreamParser,
)

NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
OPEN = f"{{{NS_FRAMING}}}open"
CLOSE = f"{{{NS_FRAMING}}}close"


class StreamFraming:
    """RFC 6120 section 4: one document per direction."""

    websocket = False
    end = b"</stream:stream>"

    def parser(self, max_stanza_size: int, max_depth: int) -> StreamParser:
        return StreamParser(max_stanza_size, max_depth)

    def header(self, stream_id: str, domain: str) -> bytes:
        return (
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            f"xmlns:stream='{NS_STREAM}' "
            f"id='{stream_id}' from='{domain}' version='1.0' xml:lang='en'>"
        ).encode()

    def features(self, features: str) -> bytes:
        return f"<stream:features>{features}</stream:features>".encode()

    def error(self, condition: str, text: str) -> bytes:
        return stream_error(condition, text)


class WebSocketFraming:
    """RFC 7395 section 3.3: one element per WebSocket message, ``<open/>`` and
    ``<close/>`` around them.  STARTTLS has no place: TLS is the WebSocket's own."""

    websocket = True
    end = f"<close xmlns='{NS_FRAMING}'/>".encode()
    _declare_stream = f" xmlns:stream='{NS_STREAM}'"

    def parser(self, max_stanza_size: int, max_depth: int) -> MessageParser:
        return MessageParser(max_stanza_size, max_depth)

    def header(self, stream_id: str, domain: str) -> bytes:
        return (
            f"<open xmlns='{NS_FRAMING}' id='{stream_id}' from='{domain}' "
            "version='1.0' xml:lang='en'/>"
        ).encode()

    def features(self, features: str) -> bytes:
        return f"<stream:features{self._declare_stream}>{features}</stream:features>".encode()

    def error(self, condition: str, text: str) -> bytes:
        plain = stream_error(condition, text)
        start = b"<stream:error"
        return start + self._declare_stream.encode() + plain[len(start) :]


STREAM = StreamFraming()
WEBSOCKET = WebSocketFraming()
Framing = StreamFraming | WebSocketFraming

#: the stream header a ``MessageParser`` parses every message inside
_HEADER = f"<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAM}'>".encode()


class MessageParser:
    """Events from WebSocket messages, each one complete element (RFC 7395 3.3.3): the
    ``<open/>`` that starts a stream is a ``StreamOpened``, ``<close/>`` a
    ``StreamClosed``, anything else a stanza or nonza.  Messages are parsed as children
    of a stream header of our own, so every rule and limit of ``StreamParser`` applies
    to them (no DTD, comments or processing instructions, stanza size and depth), and
    stanzas serialize as they do over TCP.  A message that is not exactly one element
    (nothing, two, part of one, text around one, an XML declaration) is
    ``not-well-formed``."""

    def __init__(self, max_stanza_size: int = 262_144, max_depth: int = 100) -> None:
        self._stream = StreamParser(max_stanza_size, max_depth)
        self.reset()

    def reset(self) -> None:
        """Start over for a new stream (after SASL success): the next message opens it."""
        self._stream.reset()
        self._stream.feed(_HEADER)
        self.opened = False
        self.closed = False

    def release(self) -> None:
        self._stream.release()

    def close(self) -> None:
        self._stream.close()

    @property
    def header_declarations(self) -> tuple[bytes, ...]:
        return self._stream.header_declarations

    def feed(self, message: bytes) -> list[Event]:
        if self.closed:
            raise StreamError("not-well-formed", "a message after <close/>")
        content = message.strip()
        if not (content.startswith(b"<") and content.endswith(b">")):
            raise StreamError("not-well-formed", "a message must be one XML element")
        events = self._stream.feed(content)
        if len(events) != 1 or not self._stream.between_stanzas:
            raise StreamError("not-well-formed", "a message must be one complete element")
        element = events[0]
        if isinstance(element, StreamOpened | StreamClosed):
            raise StreamError("not-well-formed", "stream headers have no place in a message")
        if element.tag == CLOSE:
            self.closed = True
            return [StreamClosed()]
        if self.opened:
            return [element]
        if element.tag != OPEN:
            raise StreamError("invalid-namespace", "open the stream with <open/> first")
        self.opened = True
        return [StreamOpened({_name(key): value for key, value in element.attrib.items()})]


def _name(qualified: str) -> str:
    return "xml:lang" if qualified == XML_LANG else qualified


#: a start, end or empty-element tag of well-formed XML; a quoted attribute value may
#: hold '>' (which lxml escapes, but a hand-built one need not)
_TAG = re.compile(rb"""<(/?)(?:[^>"']|"[^"]*"|'[^']*')*+>""")


def split_elements(data: bytes) -> list[bytes]:
    """The top-level elements of the connection's output, one WebSocket message each.

    The output is a run of complete elements the broker serialized itself: no comments,
    CDATA sections or processing instructions, and ``<`` only where markup starts, so
    counting tags finds where each element ends."""
    elements: list[bytes] = []
    depth = 0
    start = 0
    for tag in _TAG.finditer(data):
        if tag.group(1):  # an end tag
            depth -= 1
        else:
            if depth == 0:
                start = tag.start()
            if not tag.group().endswith(b"/>"):  # a start tag: the element goes on
                depth += 1
                continue
        if depth == 0:
            elements.append(data[start : tag.end()])
    return elements
