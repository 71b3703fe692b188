"""Malformed or hostile XMPP input closes only the offending stream, with the stream error
RFC 6120 names, and one log line; logged-in clients carry on."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from .brokers import BrokerFactory, BrokerProcess, merge
from .rawxmpp import RawXmpp, header, stream_error_condition
from .xmpp import USERS, XmppClients, xmpp_config

MAX_STANZA = 16_384
MAX_DEPTH = 20
#: how far an offence gets first: nothing sent, stream header exchanged, or logged in
FRESH, OPENED, BOUND = "fresh", "opened", "bound"
BILLION_LAUGHS = (
    b"<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY lol 'lol'>"
    + b"".join(
        b"<!ENTITY lol%d '%s'>"
        % (i, b"".join(b"&lol%s;" % (str(i - 1).encode() if i > 1 else b"") for _ in range(10)))
        for i in range(1, 10)
    )
    + b"]>"
)


@dataclass(frozen=True)
class Offence:
    stage: str
    data: bytes
    condition: str


OFFENCES = {
    "not-well-formed": Offence(BOUND, b"<message><body>hi</bdy></message>", "not-well-formed"),
    "undeclared-entity": Offence(
        BOUND, b"<message><body>&lol9;</body></message>", "not-well-formed"
    ),
    "billion-laughs": Offence(
        FRESH, BILLION_LAUGHS + header()[21:] + b"<message>&lol9;</message>", "restricted-xml"
    ),
    "external-entity": Offence(
        FRESH,
        b"<!DOCTYPE stream:stream [<!ENTITY x SYSTEM 'file:///dev/zero'>]>"
        + header()[21:]
        + b"<message>&x;</message>",
        "restricted-xml",
    ),
    "comment": Offence(BOUND, b"<message><!-- hello --></message>", "restricted-xml"),
    "stanza-over-size-limit": Offence(
        BOUND,
        b"<message><body>" + b"x" * (2 * MAX_STANZA) + b"</body></message>",
        "policy-violation",
    ),
    "nesting-over-depth-limit": Offence(
        BOUND, b"<message>" + b"<a>" * MAX_DEPTH, "policy-violation"
    ),
    "stanza-before-auth": Offence(
        OPENED, b"<message to='bob@localhost'><body>hi</body></message>", "not-authorized"
    ),
    "iq-before-auth": Offence(
        OPENED, b"<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>", "not-authorized"
    ),
    "forged-from": Offence(
        BOUND,
        b"<message from='bob@localhost/phone' to='alice@localhost'><body>hi</body></message>",
        "invalid-from",
    ),
    "unknown-content-namespace": Offence(
        FRESH, header(namespace="jabber:server"), "invalid-namespace"
    ),
    "unknown-stream-namespace": Offence(
        FRESH,
        header().replace(b"http://etherx.jabber.org/streams", b"urn:unknown"),
        "invalid-namespace",
    ),
    "wrong-to": Offence(FRESH, header(to="example.org"), "host-unknown"),
}


@pytest.fixture
def xmpp_broker(broker_factory: BrokerFactory) -> BrokerProcess:
    """The XMPP test broker with small stanza size and depth limits."""
    limits = {"limits": {"xmpp_max_stanza_size": MAX_STANZA, "xml_max_depth": MAX_DEPTH}}
    return broker_factory(merge(xmpp_config(), limits))


@pytest.mark.parametrize("offence", OFFENCES.values(), ids=OFFENCES.keys())
def test_bad_input_closes_only_that_stream(
    xmpp_broker: BrokerProcess, xmpp: XmppClients, offence: Offence
) -> None:
    alice = xmpp.login("alice@localhost/desk")
    bob = xmpp.login("bob@localhost/phone")
    assert xmpp_broker.xmpp_port
    raw = RawXmpp(xmpp_broker.host, xmpp_broker.xmpp_port)
    try:
        if offence.stage == OPENED:
            raw.open_stream()
        elif offence.stage == BOUND:
            ca = xmpp_broker.data_dir / "tls" / "self-signed.crt"
            assert raw.login("carol", USERS["carol"], "raw", ca=ca) == "carol@localhost/raw"
        raw.send_until_closed(offence.data)
        said = raw.wait_closed()
    finally:
        raw.close()
    assert stream_error_condition(said) == offence.condition, said
    assert said.rstrip().endswith(b"</stream:stream>"), said

    alice.send_message("bob@localhost/phone", "still here")
    assert bob.next_message()["body"] == "still here"
    xmpp_broker.wait_logged(f"peer={raw.peer}", 1)
    lines = [line for line in xmpp_broker.log if f"peer={raw.peer}" in line]
    assert len(lines) == 1, lines
    assert f"xmpp stream error peer={raw.peer} error=" in lines[0]
    assert f"error={offence.condition}" in lines[0].replace('"', "")
