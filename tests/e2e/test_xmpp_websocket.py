"""XMPP over WebSocket (RFC 7395) on ``/xmpp``: a raw client written with the `websockets`
library logs in, binds and chats with a TCP slixmpp client; bad messages end the stream
with a stream error and ``<close/>``; a lost session is resumed (XEP-0198).

The raw client parses every message it receives on its own, so each must be one complete
element with its namespaces declared, as RFC 7395 requires.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Callable, Iterator

import pytest
from lxml import etree
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from .brokers import BrokerProcess
from .xmpp import USERS, XmppClients

TIMEOUT = 10.0
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
STREAM = "http://etherx.jabber.org/streams"
SM = "urn:xmpp:sm:3"
CLIENT = "jabber:client"
OPEN = f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"
CLOSE = f"<close xmlns='{FRAMING}'/>"


class WebSocketXmpp:
    """A blocking RFC 7395 client; every wait has a timeout."""

    def __init__(self, ws: ClientConnection) -> None:
        assert ws.subprotocol == "xmpp"
        self.ws = ws

    def send(self, message: str) -> None:
        self.ws.send(message)

    def receive(self) -> etree._Element:
        """The next message, parsed as a document of its own."""
        message = self.ws.recv(timeout=TIMEOUT)
        assert isinstance(message, str), "XMPP messages are text"
        return etree.fromstring(message.encode())

    def receive_until(self, tag: str) -> etree._Element:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            element = self.receive()
            if element.tag == tag:
                return element
        raise AssertionError(f"no {tag} in time")

    def open(self) -> etree._Element:
        """Open the stream; return the features the broker offers."""
        self.send(OPEN)
        opened = self.receive()
        assert opened.tag == f"{{{FRAMING}}}open" and opened.get("from") == "localhost"
        assert opened.get("version") == "1.0" and opened.get("id")
        features = self.receive()
        assert features.tag == f"{{{STREAM}}}features"
        return features

    def authenticate(self, user: str, password: str) -> etree._Element:
        """SASL PLAIN; the broker's answer (success or failure)."""
        features = self.open()
        mechanisms = [m.text for m in features.iter(f"{{{SASL}}}mechanism")]
        assert "PLAIN" in mechanisms
        assert features.find("{urn:ietf:params:xml:ns:xmpp-tls}starttls") is None
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
        return self.receive()

    def login(self, user: str, resource: str) -> str:
        """Authenticate, open the stream again, bind; return the full JID."""
        assert self.authenticate(user, USERS[user]).tag == f"{{{SASL}}}success"
        assert self.open().find(f"{{{BIND}}}bind") is not None
        self.send(
            f"<iq xmlns='{CLIENT}' type='set' id='bind1'><bind xmlns='{BIND}'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        reply = self.receive()
        assert reply.get("type") == "result", etree.tostring(reply)
        return reply.findtext(f"{{{BIND}}}bind/{{{BIND}}}jid") or ""

    def close(self) -> None:
        self.ws.close()

    def closed_with(self) -> list[etree._Element]:
        """Everything received until the broker closes the WebSocket."""
        received = []
        try:
            while True:
                received.append(self.receive())
        except ConnectionClosed:
            return received


OpenClient = Callable[[], WebSocketXmpp]


@pytest.fixture
def websocket_client(xmpp: XmppClients) -> Iterator[OpenClient]:
    """Opens RFC 7395 clients on the broker of ``xmpp``; all close at teardown."""
    broker: BrokerProcess = xmpp.broker
    assert broker.http_port, "no http listener"
    url = f"ws://{broker.host}:{broker.http_port}/xmpp"
    with contextlib.ExitStack() as clients:

        def open_client() -> WebSocketXmpp:
            connection = connect(url, subprotocols=[Subprotocol("xmpp")], open_timeout=TIMEOUT)
            return WebSocketXmpp(clients.enter_context(connection))

        yield open_client


def test_websocket_client_chats_with_a_tcp_client(
    xmpp: XmppClients, websocket_client: OpenClient
) -> None:
    alice = websocket_client()
    assert alice.login("alice", "browser") == "alice@localhost/browser"
    alice.send(f"<presence xmlns='{CLIENT}'/>")
    bob = xmpp.login("bob@localhost/phone")

    alice.send(
        f"<message xmlns='{CLIENT}' to='bob@localhost/phone' type='chat'>"
        "<body>hello from a browser</body></message>"
    )
    message = bob.next_message()
    assert (message["body"], str(message["from"])) == (
        "hello from a browser",
        "alice@localhost/browser",
    )

    bob.send_message("alice@localhost/browser", "hello from TCP")
    reply = alice.receive_until(f"{{{CLIENT}}}message")
    assert reply.findtext(f"{{{CLIENT}}}body") == "hello from TCP"
    assert reply.get("from") == "bob@localhost/phone"

    alice.send(CLOSE)
    assert [el.tag for el in alice.closed_with()][-1:] == [f"{{{FRAMING}}}close"]


def test_wrong_password_fails(websocket_client: OpenClient) -> None:
    client = websocket_client()
    failure = client.authenticate("alice", "wrong")
    assert failure.tag == f"{{{SASL}}}failure"
    assert failure.find(f"{{{SASL}}}not-authorized") is not None


@pytest.mark.parametrize(
    "message",
    [
        f"<message xmlns='{CLIENT}'><oops></message>",  # not well-formed
        f"<presence xmlns='{CLIENT}'/><presence xmlns='{CLIENT}'/>",  # two elements
        f"<message xmlns='{CLIENT}'><body>half",  # part of one
    ],
    ids=["not-well-formed", "two-elements", "partial-element"],
)
def test_a_bad_message_ends_the_stream_with_an_error_then_close(
    websocket_client: OpenClient, message: str
) -> None:
    client = websocket_client()
    client.login("alice", "desk")
    client.send(message)
    error, close = client.closed_with()
    assert error.tag == f"{{{STREAM}}}error"
    assert error[0].tag == f"{{{STREAMS}}}not-well-formed"
    assert close.tag == f"{{{FRAMING}}}close"


def test_a_stream_error_closes_only_that_websocket(websocket_client: OpenClient) -> None:
    good = websocket_client()
    good.login("bob", "laptop")
    bad = websocket_client()
    bad.open()
    bad.send("not xml at all")
    assert [el.tag for el in bad.closed_with()][-1] == f"{{{FRAMING}}}close"
    good.send(f"<iq xmlns='{CLIENT}' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert good.receive_until(f"{{{CLIENT}}}iq").get("id") == "p1"


def test_stream_management_resumes_a_websocket_session_that_was_lost(
    xmpp: XmppClients, websocket_client: OpenClient
) -> None:
    alice = websocket_client()
    alice.login("alice", "browser")
    alice.send(f"<enable xmlns='{SM}' resume='true'/>")
    enabled = alice.receive()
    assert enabled.tag == f"{{{SM}}}enabled" and enabled.get("resume") == "true"
    bob = xmpp.login("bob@localhost/phone")
    bob.send_message("alice@localhost/browser", "first")
    assert alice.receive_until(f"{{{CLIENT}}}message").findtext(f"{{{CLIENT}}}body") == "first"
    assert alice.receive().tag == f"{{{SM}}}r"  # the ack request is a message of its own

    alice.close()  # the WebSocket goes without <close/>: the session hibernates
    bob.send_message("alice@localhost/browser", "while away")
    again = websocket_client()
    assert again.authenticate("alice", USERS["alice"]).tag == f"{{{SASL}}}success"
    again.open()
    again.send(f"<resume xmlns='{SM}' previd='{enabled.get('id')}' h='1'/>")
    assert again.receive().tag == f"{{{SM}}}resumed"
    message = again.receive_until(f"{{{CLIENT}}}message")
    assert message.findtext(f"{{{CLIENT}}}body") == "while away"
