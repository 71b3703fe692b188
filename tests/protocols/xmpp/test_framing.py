"""RFC 7395 framing, sans-I/O: the message parser, the splitting of output into one
element per message, and an ``XMPPConnection`` negotiating in WebSocket framing."""

from __future__ import annotations

import base64

import pytest
from lxml import etree

from broker.auth import UserDB
from protocols.xmpp.connection import StreamSettings, XMPPConnection
from protocols.xmpp.framing import WEBSOCKET, MessageParser, split_elements
from protocols.xmpp.stream import StreamClosed, StreamError, StreamOpened

from .test_connection import Handler

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
OPEN = f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>".encode()
CLOSE = f"<close xmlns='{FRAMING}'/>".encode()
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"


def opened_parser() -> MessageParser:
    parser = MessageParser(max_stanza_size=4096, max_depth=10)
    assert parser.feed(OPEN) == [StreamOpened({"to": "localhost", "version": "1.0"})]
    return parser


def test_open_stanzas_and_close_are_events() -> None:
    parser = opened_parser()
    (message,) = parser.feed(b"<message xmlns='jabber:client' to='bob@localhost'/>")
    assert isinstance(message, etree._Element)
    assert message.tag == "{jabber:client}message" and message.get("to") == "bob@localhost"
    assert parser.feed(b" <r xmlns='urn:xmpp:sm:3'/>\n")[0].tag == "{urn:xmpp:sm:3}r"
    assert parser.feed(CLOSE) == [StreamClosed()]
    assert parser.closed


def test_xml_lang_of_open_is_reported_by_its_usual_name() -> None:
    parser = MessageParser()
    (opened,) = parser.feed(f"<open xmlns='{FRAMING}' xml:lang='de' to='x'/>".encode())
    assert isinstance(opened, StreamOpened) and opened.attributes["xml:lang"] == "de"


def test_a_second_open_after_reset_opens_again() -> None:
    parser = opened_parser()
    parser.reset()
    assert isinstance(parser.feed(OPEN)[0], StreamOpened)


@pytest.mark.parametrize(
    ("message", "condition"),
    [
        (b"", "not-well-formed"),
        (b"   ", "not-well-formed"),
        (b"hello", "not-well-formed"),
        (b"<message xmlns='jabber:client'>", "not-well-formed"),
        (b"<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>", "not-well-formed"),
        (b"<presence xmlns='jabber:client'/>trailing", "not-well-formed"),
        (b"<presence xmlns='jabber:client'><x></presence>", "not-well-formed"),
        (b"</stream:stream>", "not-well-formed"),
        (b"<?xml version='1.0'?><presence xmlns='jabber:client'/>", "not-well-formed"),
        (b"<!DOCTYPE x [<!ENTITY a 'b'>]><x/>", "not-well-formed"),
        (b"<presence xmlns='jabber:client'><!-- no --></presence>", "restricted-xml"),
        (b"<presence xmlns='jabber:client'>" + b"x" * 8192 + b"</presence>", "policy-violation"),
    ],
)
def test_a_message_that_is_not_one_acceptable_element_is_a_stream_error(
    message: bytes, condition: str
) -> None:
    parser = opened_parser()
    with pytest.raises(StreamError) as raised:
        parser.feed(message)
    assert raised.value.condition == condition


def test_anything_but_open_first_is_invalid_namespace() -> None:
    for first in (b"<presence xmlns='jabber:client'/>", b"<open xmlns='jabber:client'/>"):
        with pytest.raises(StreamError) as raised:
            MessageParser().feed(first)
        assert raised.value.condition == "invalid-namespace"


def test_a_message_after_close_is_an_error() -> None:
    parser = opened_parser()
    parser.feed(CLOSE)
    with pytest.raises(StreamError):
        parser.feed(b"<presence xmlns='jabber:client'/>")


def test_split_elements_cuts_output_at_top_level_element_ends() -> None:
    parts = [
        b"<open xmlns='x' id='1'/>",
        b"<stream:features xmlns:stream='s'><a xmlns='y'><b/></a></stream:features>",
        b"<message xmlns='jabber:client' to='a&gt;b' x=\"q/>\"><body>1 > 0 &amp; a/b</body>"
        b"<c/></message>",
        b"<r xmlns='urn:xmpp:sm:3'/>",
    ]
    assert split_elements(b"".join(parts)) == parts
    assert split_elements(b"") == []


# --- a connection in WebSocket framing ------------------------------------------------


class WebSocketClient:
    """A connection in WebSocket framing; ``send`` gives back the messages it produced."""

    def __init__(self, users: UserDB) -> None:
        self.handler = Handler()
        self.conn = XMPPConnection(
            StreamSettings("localhost", max_stanza_size=4096, max_depth=10),
            users,
            self.handler,
            peer="127.0.0.1:5000",
            peer_loopback=True,
            tls_available=True,
            framing=WEBSOCKET,
        )

    def send(self, message: bytes | str) -> list[bytes]:
        self.conn.receive(message.encode() if isinstance(message, str) else message)
        out = bytes(self.conn.outbox)
        self.conn.outbox.clear()
        return split_elements(out)


def documents(messages: list[bytes]) -> list[etree._Element]:
    """Each message parsed on its own: every one must be a whole namespaced document."""
    return [etree.fromstring(message) for message in messages]


def test_open_is_answered_with_open_and_features_without_starttls(users: UserDB) -> None:
    client = WebSocketClient(users)
    opened, features = documents(client.send(OPEN))
    assert opened.tag == f"{{{FRAMING}}}open"
    assert opened.get("from") == "localhost" and opened.get("version") == "1.0"
    assert opened.get("id") and opened.get("{http://www.w3.org/XML/1998/namespace}lang")
    assert features.tag == "{http://etherx.jabber.org/streams}features"
    assert [etree.QName(child).localname for child in features] == ["mechanisms"]
    assert "PLAIN" in [m.text for m in features.iter(f"{{{SASL}}}mechanism")]


def test_sasl_then_a_new_open_then_bind_features(users: UserDB) -> None:
    client = WebSocketClient(users)
    client.send(OPEN)
    plain = base64.b64encode(b"\0alice\0alicepw").decode()
    (success,) = documents(client.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{plain}</auth>"))
    assert success.tag == f"{{{SASL}}}success"
    opened, features = documents(client.send(OPEN))
    assert opened.tag == f"{{{FRAMING}}}open"
    assert features.find(f"{{{BIND}}}bind") is not None
    iq = f"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{BIND}'/></iq>"
    client.send(iq)
    assert client.handler.elements[-1].tag == "{jabber:client}iq"


def test_a_stream_error_is_followed_by_close(users: UserDB) -> None:
    client = WebSocketClient(users)
    client.send(OPEN)
    error, close = documents(client.send(b"<message xmlns='jabber:client'><oops></message>"))
    assert error.tag == "{http://etherx.jabber.org/streams}error"
    assert error[0].tag == f"{{{STREAMS}}}not-well-formed"
    assert close.tag == f"{{{FRAMING}}}close"
    assert client.conn.closing and client.conn.stream_error == "not-well-formed"


def test_an_error_before_open_still_opens_first(users: UserDB) -> None:
    client = WebSocketClient(users)
    tags = [el.tag for el in documents(client.send(b"<presence xmlns='jabber:client'/>"))]
    assert tags == [
        f"{{{FRAMING}}}open",
        "{http://etherx.jabber.org/streams}error",
        f"{{{FRAMING}}}close",
    ]


def test_close_is_answered_with_close(users: UserDB) -> None:
    client = WebSocketClient(users)
    client.send(OPEN)
    assert client.send(CLOSE) == [CLOSE]
    assert client.conn.closing and client.conn.stream_error is None


def test_starttls_is_refused_over_a_websocket(users: UserDB) -> None:
    client = WebSocketClient(users)
    client.send(OPEN)
    failure, close = client.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    assert failure == b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    assert close == CLOSE and not client.conn.tls_requested
